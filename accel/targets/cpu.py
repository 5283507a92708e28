"""The ``cpu`` target: the fastest CPU backend accel has for the graph.

Backends: aten (reference, runs anything) and onnx (the whole graph as one onnxruntime
session). By default both are built and timed on the example inputs, in alternation with a
pause at each switch, and the faster one is kept; the choice and the timings go into the
report. A graph with ops that have no ONNX lowering runs on aten.
``options={"executor": "ort" | "aten"}`` forces one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch

from accel.backends.aten import AtenExecutor
from accel.backends.onnx.exporter import unsupported_nodes
from accel.errors import AccelValueError, ExportError
from accel.ir.graph import Graph
from accel.runtime import Executable
from accel.targets import LowerContext, register_target
from accel.timing import interleaved_ms, median_ms

EXECUTORS = ("auto", "ort", "aten")
TIMED_RUNS = 3
"""Timed runs per executor when choosing by measurement (after one warm-up run)."""
CLEAR_WIN = 3.0
"""When aten's first run is this many times slower than onnxruntime, aten is not re-timed."""
SWITCH_PAUSE_S = 0.05
"""Pause before timing one runtime after the other ran: both keep worker threads spinning for
a while after a call, which on a 2-core machine slows whichever runs next by up to ~50%."""


def time_executor(executable: Executable, inputs: Sequence[torch.Tensor],
                  runs: int = TIMED_RUNS, warmup: bool = True) -> float:
    """Median seconds of ``runs`` calls (after one warm-up call if ``warmup``)."""
    return median_ms(lambda: executable.run(inputs), runs, warmup=int(warmup)) / 1e3


OPTIONS = {"executor": "'auto' (measure both), 'ort' or 'aten'"}


@register_target("cpu", "CPU: onnxruntime or the ATen executor, whichever measures faster",
                 OPTIONS)
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
    from accel.backends.onnx.ort import lower_onnxruntime

    try:
        ort_exec = lower_onnxruntime(graph)
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
    time.sleep(SWITCH_PAUSE_S)
    t_ort_first = time_executor(ort_exec, inputs, runs=1, warmup=False)
    if t_aten_first > CLEAR_WIN * t_ort_first:  # no need to time aten further
        t_ort, t_aten, how = time_executor(ort_exec, inputs), t_aten_first, "aten: 1 run"
    else:
        times = interleaved_ms({"ort": lambda: ort_exec.run(inputs),
                                "aten": lambda: aten.run(inputs)}, TIMED_RUNS, SWITCH_PAUSE_S)
        t_ort, t_aten = (statistics.median(times[k]) / 1e3 for k in ("ort", "aten"))
        how = f"interleaved, median of {TIMED_RUNS} each"
    best = ort_exec if t_ort <= t_aten else aten
    ctx.note(f"executor: {best.name} (measured: onnxruntime {t_ort * 1e3:.2f} ms, "
             f"{ort_exec.threads} threads; aten {t_aten * 1e3:.2f} ms; {how})")
    return best

