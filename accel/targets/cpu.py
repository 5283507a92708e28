"""The ``cpu`` target: the fastest CPU executor accel has for the graph.

Executors: ``aten`` (reference, runs anything) and ``ort`` (the whole graph as one
onnxruntime session). By default both are built and timed on the example inputs and the
faster one is kept; the choice and the timings go into the report. A graph with ops that
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

EXECUTORS = ("auto", "ort", "aten")
TIMED_RUNS = 3
"""Timed runs per executor when choosing by measurement (after one warm-up run)."""


def time_executor(executable: Executable, inputs: Sequence[torch.Tensor],
                  runs: int = TIMED_RUNS) -> float:
    """Median seconds of ``runs`` calls, after one warm-up call."""
    with torch.no_grad():
        executable.run(inputs)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            executable.run(inputs)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


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
    t_aten = time_executor(aten, inputs)  # first: onnxruntime's spinning threads would slow it
    t_ort = time_executor(ort_exec, inputs)
    best, name = (ort_exec, "onnxruntime") if t_ort <= t_aten else (aten, "aten")
    ctx.note(f"executor: {name} (measured median of {TIMED_RUNS}: onnxruntime "
             f"{t_ort * 1e3:.2f} ms with {ort_exec.threads} threads, aten {t_aten * 1e3:.2f} ms)")
    return best
