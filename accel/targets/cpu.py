"""The ``cpu`` target: the fastest CPU executor accel has for the graph.

Executors: ``aten`` (reference, runs anything) and ``ort`` (the whole graph as one
onnxruntime session). By default both are built and timed on the example inputs (aten is
run first, since onnxruntime's spinning threads would slow it) and the faster one is kept;
the choice and the timings go into the report. A graph with ops that
have no ONNX lowering runs on aten. ``options={"executor": "ort" | "aten"}`` forces one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from accel.codegen.onnx.exporter import unsupported_nodes
from accel.errors import AccelValueError, ExportError
from accel.ir.graph import Graph
from accel.runtime.executor import AtenExecutor
from accel.targets import Executable, LowerContext, register_target
from accel.timing import median_ms

EXECUTORS = ("auto", "ort", "aten")
TIMED_RUNS = 3
"""Timed runs per executor when choosing by measurement (after one warm-up run)."""
CLEAR_WIN = 3.0
"""When aten's first run is this many times slower than onnxruntime, aten is not re-timed."""


def time_executor(executable: Executable, inputs: Sequence[torch.Tensor],
                  runs: int = TIMED_RUNS, warmup: bool = True) -> float:
    """Median seconds of ``runs`` calls (after one warm-up call if ``warmup``)."""
    return median_ms(lambda: executable.run(inputs), runs, warmup=int(warmup)) / 1e3


@register_target("cpu", "CPU: onnxruntime or the ATen executor, whichever measures faster")
def lower_cpu(graph: Graph, ctx: LowerContext) -> Executable:
    """Lower for CPU inference, choosing the executor by measurement."""
    choice = ctx.options.get("executor", "auto")
    if choice not in EXECUTORS:
        raise AccelValueError(f"cpu target: unknown executor '{choice}'; valid: "
                              f"{', '.join(EXECUTORS)}")
    aten = AtenExecutor(graph)
    if choice == "aten":
        ctx.note(f"aten executor: {len(graph)} steps (forced by options)")
        return aten
    missing = unsupported_nodes(graph)
    if missing:
        ops = sorted({n.op for n in missing})
        msg = (f"aten executor: {len(graph)} steps; onnxruntime not used: {len(missing)} "
               f"node(s) without ONNX lowering (ops: {', '.join(ops)}; first: {missing[0].name})")
        if choice == "ort":
            raise ExportError(f"cpu target: executor 'ort' was requested but {msg}")
        ctx.note(msg)
        return aten
    from accel.runtime.ort_executor import OrtExecutor

    try:
        ort_exec = OrtExecutor(graph)
    except ExportError as e:
        if choice == "ort":
            raise
        ctx.note(f"aten executor: {len(graph)} steps; onnxruntime export failed: {e}")
        return aten
    if choice == "ort":
        ctx.note(f"onnxruntime executor: 1 session, {ort_exec.threads} threads (forced by "
                 "options)")
        return ort_exec
    inputs = ctx.example_inputs
    if any(t.device.type != "cpu" for t in inputs):
        ctx.note("aten executor: inputs are not on the CPU")
        return aten
    t_aten_first = time_executor(aten, inputs, runs=1, warmup=False)
    t_ort = time_executor(ort_exec, inputs)
    if t_aten_first > CLEAR_WIN * t_ort:  # no need to time aten further
        t_aten, how = t_aten_first, "1 run"
    else:
        time.sleep(0.05)  # let onnxruntime's spinning worker threads go idle
        t_aten, how = time_executor(aten, inputs), f"median of {TIMED_RUNS}"
    best, name = (ort_exec, "onnxruntime") if t_ort <= t_aten else (aten, "aten")
    ctx.note(f"executor: {name} (measured: onnxruntime {t_ort * 1e3:.2f} ms, median of "
             f"{TIMED_RUNS}, {ort_exec.threads} threads; aten {t_aten * 1e3:.2f} ms, {how})")
    return best
