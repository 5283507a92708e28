"""The ``cpu`` target: the fastest CPU backend accel has for the graph.

Backends: aten (reference, runs anything), onnxruntime and OpenVINO (the whole graph as one
session / compiled model, from the same standard-op ONNX; OpenVINO when it is installed).
By default each is built and timed on the example inputs, within a time budget: a first
call of each, then calls in alternation (a pause at each switch) while the budget lasts, and
the fastest is kept; the choice and the timings go into the report. aten is not timed where a
cheap estimate rules it out (its first call is many times slower than the fastest, or the
graph's int8 matmuls would run on ``torch._int_mm``, which no CPU runs faster than
onnxruntime's integer kernels). A graph with ops that have no ONNX lowering runs on aten.
``options={"executor": "ort" | "openvino" | "aten"}`` forces one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch

from accel.backends.aten import AtenExecutor
from accel.backends.onnx.exporter import unsupported_nodes
from accel.backends.openvino import available as openvino_available
from accel.errors import AccelValueError, ExportError
from accel.host import host
from accel.ir.graph import Graph
from accel.runtime import Executable
from accel.targets import LowerContext, register_target
from accel.timing import interleaved_ms, median_ms

EXECUTORS = ("auto", "ort", "openvino", "aten")
TIMED_RUNS = 3
"""Timed runs per executor when choosing by measurement (after one first run), at most."""
CHOICE_BUDGET_S = 4.0
"""Seconds the choice may spend on timed runs after the first run of each executor."""
CLEAR_WIN = 3.0
"""An executor whose first run is this many times slower than the fastest is not re-timed."""
SWITCH_PAUSE_S = 0.05
"""Pause before timing one runtime after the other ran: both keep worker threads spinning for
a while after a call, which on a 2-core machine slows whichever runs next by up to ~50%."""
_INT8_OPS = frozenset({"linear_int8_dynamic", "linear_int8_static"})


def time_executor(executable: Executable, inputs: Sequence[torch.Tensor],
                  runs: int = TIMED_RUNS, warmup: bool = True) -> float:
    """Median seconds of ``runs`` calls (after one warm-up call if ``warmup``)."""
    return median_ms(lambda: executable.run(inputs), runs, warmup=int(warmup)) / 1e3


OPTIONS = {"executor": "'auto' (measure), 'ort', 'openvino' or 'aten'"}


@register_target("cpu", "CPU: onnxruntime, OpenVINO or the ATen executor, whichever measures "
                 "fastest", OPTIONS)
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
        msg = (f"aten executor: {len(graph)} steps; onnxruntime/OpenVINO not used: "
               f"{len(missing)} node(s) without ONNX lowering (ops: {', '.join(ops)}; first: "
               f"{missing[0].name})")
        if choice != "auto":
            raise ExportError(f"cpu target: executor '{choice}' was requested but {msg}")
        ctx.note(msg)
        return aten
    if choice != "auto":
        executor = _build(choice, graph, ctx)
        ctx.note(f"{executor.name} executor: {executor.threads} threads (forced by options)")
        return executor
    candidates: dict[str, Executable] = {}
    failed = []
    int8 = sum(n.op in _INT8_OPS for n in graph.nodes)
    fp32 = dequantized(graph) if int8 else None
    for name in ("ort", "openvino", "ort-fp32", "openvino-fp32"):
        base = name.removesuffix("-fp32")
        if (base == "openvino" and not openvino_available()) or (name != base and not int8):
            continue
        try:
            candidates[name] = _build(base, graph if name == base else fp32, ctx)
        except ExportError as e:
            failed.append(f"{name}: {e}")
    for line in failed:
        ctx.note(f"executor not used: {line}")
    if not candidates:
        ctx.note(f"aten executor: {len(graph)} steps")
        return aten
    inputs = ctx.example_inputs
    if any(t.device.type != "cpu" for t in inputs):
        ctx.note("aten executor: inputs are not on the CPU")
        return aten
    skip_aten = (f"aten not timed: {int8} int8 matmul(s) would run on torch._int_mm, slower "
                 "than onnxruntime's integer kernels on CPU") if int8 else None
    if skip_aten is None:
        candidates["aten"] = aten
    with ctx.timed("choice"):
        best_name, line = _choose(candidates, inputs)
    best = candidates[best_name]
    ctx.note(f"executor: {best.name} (measured: {line}{'; ' + skip_aten if skip_aten else ''})")
    if best_name.endswith("-fp32"):
        ctx.note(f"int8 does not pay on this host ({host().describe()}): its {int8} int8 "
                 "linear(s) run as fp32 linears on the dequantized int8 weights (activations "
                 "unquantized: at least as accurate as the int8 graph the accuracy report "
                 "measures)")
    return best  # the losers (sessions, their copies of the weights) go with ``candidates``


def dequantized(graph: Graph) -> Graph:
    """``graph`` with its int8 linears as fp32 linears on the dequantized int8 weights
    (``w_q * w_scale``): the weights keep their rounding, activations stay fp32. The form
    the cpu target runs where int8 matmuls do not pay on the host (e.g. without VNNI)."""
    rw = graph.rewriter()
    for n in graph.nodes:
        if n.op not in _INT8_OPS:
            continue
        x, w_q, w_scale = n.inputs[:3]
        bias = n.inputs[3] if len(n.inputs) > 3 else None
        w = graph.const(w_q).float() * graph.const(w_scale).float().reshape(-1, 1)
        y = rw.op("linear", x, rw.const(w.to(x.dtype), f"{n.name}_w"), bias)
        rw.replace(n.outputs[0], y)
        rw.remove(n)
    return rw.finish()


def _build(name: str, graph: Graph, ctx: LowerContext) -> Executable:
    if name == "ort":
        from accel.backends.onnx.ort import lower_onnxruntime
        return lower_onnxruntime(graph, keep_model=ctx.keep_model)
    from accel.backends.openvino import lower_openvino
    return lower_openvino(graph, keep_model=ctx.keep_model)


def _choose(candidates: dict[str, Executable], inputs: Sequence[torch.Tensor]
            ) -> tuple[str, str]:
    """The fastest of ``candidates`` on ``inputs``, and a line saying how it was measured.

    One first run each (after a warm-up call for sessions); executors more than
    :data:`CLEAR_WIN` times slower than the fastest first run are dropped; the rest
    alternate while :data:`CHOICE_BUDGET_S` lasts, up to :data:`TIMED_RUNS` runs each, and
    the lowest median wins.
    """
    first: dict[str, float] = {}
    for name, ex in candidates.items():  # a session's first call sets up (shapes, buffers)
        first[name] = time_executor(ex, inputs, runs=1, warmup=name != "aten")
        time.sleep(SWITCH_PAUSE_S)
    fastest = min(first.values())
    alive = {k: ex for k, ex in candidates.items() if first[k] <= CLEAR_WIN * fastest}
    per_round = sum(first[k] for k in alive) + SWITCH_PAUSE_S * len(alive)
    runs = max(1, min(TIMED_RUNS, int(CHOICE_BUDGET_S / max(per_round, 1e-9))))
    medians = dict(first)
    if len(alive) > 1:
        times = interleaved_ms({k: (lambda ex=ex: ex.run(inputs)) for k, ex in alive.items()},
                               runs, SWITCH_PAUSE_S)
        medians.update({k: statistics.median(v) / 1e3 for k, v in times.items()})
        how = f"interleaved, median of {runs}"
    else:
        how = "first run each"
    best = min(alive, key=lambda k: medians[k])
    labels = {"ort": "onnxruntime", "openvino": "OpenVINO", "aten": "aten",
              "ort-fp32": "onnxruntime fp32-dequantized",
              "openvino-fp32": "OpenVINO fp32-dequantized"}
    parts = []
    for k, ex in candidates.items():
        threads = f", {ex.threads} threads" if hasattr(ex, "threads") else ""
        dropped = "" if k in alive else " (1 run)"
        parts.append(f"{labels[k]} {medians[k] * 1e3:.2f} ms{threads}{dropped}")
    return best, "; ".join(parts) + f"; {how}"
