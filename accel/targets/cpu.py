"""The ``cpu`` target: the fastest CPU backend accel has for the graph.

Backends: aten (reference, runs anything), onnxruntime and OpenVINO (the whole graph as one
session / compiled model, from the same standard-op ONNX; OpenVINO when it is installed).
By default each is built and timed on the example inputs, one at a time (so compiling never
holds two runtimes' copies of the weights) within a time budget, and the fastest is kept;
for int8 graphs, their fp32-dequantized forms compete too, so int8 runs only where it pays
on this host. The choice and the timings go into the report. aten is not re-timed where a
cheap estimate rules it out (its first call is many times slower than the fastest), nor
timed at all for int8 graphs (its int8 matmuls run on ``torch._int_mm``, which no CPU runs
faster than onnxruntime's integer kernels). A graph with ops that have no ONNX lowering
runs on aten. ``options={"executor": "ort" | "openvino" | "aten"}`` forces one;
``options={"prefer": "memory"}`` leaves OpenVINO out of the choice (its session holds more
memory than onnxruntime's, for the speed it often wins by).

Memory: aten is timed first; the graph's weights then wait in a temporary file (mapped back
only if aten wins) while the sessions, which read theirs from the exported ONNX file, are
built and timed one at a time, so compiling holds the model, one session and little else.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import MappingProxyType

import torch

from accel.backends.aten import AtenExecutor
from accel.backends.onnx.exporter import export_file, unsupported_nodes
from accel.backends.onnx.ort import int8_weights_for
from accel.backends.openvino import available as openvino_available
from accel.errors import AccelValueError, ExportError
from accel.host import host, trim_memory
from accel.ir.graph import Graph
from accel.runtime import Executable
from accel.targets import LowerContext, register_target
from accel.timing import best_ms

EXECUTORS = ("auto", "ort", "openvino", "aten")
TIMED_RUNS = 3
"""Timed runs per executor when choosing by measurement (after one first run), at most."""
CHOICE_BUDGET_S = 4.0
"""Seconds the choice may spend on timed runs after the first run of each executor."""
CLEAR_WIN = 3.0
"""An executor whose first run is this many times slower than the fastest is not re-timed."""
MEMORY_MARGIN = 0.05
"""An executor that holds more memory (OpenVINO's session takes about 1.6x onnxruntime's;
onnxruntime's more than aten, which runs the graph's own tensors) is chosen only when it is
this much faster: closer timings are within measurement noise, and memory is not."""
_MEMORY_RANK = {"aten": 0, "ort": 1, "ort-fp32": 1, "openvino": 2, "openvino-fp32": 2}
SWITCH_PAUSE_S = 0.05
"""Pause before timing one runtime after the other ran: both keep worker threads spinning for
a while after a call, which on a 2-core machine slows whichever runs next by up to ~50%."""
_INT8_OPS = frozenset({"linear_int8_dynamic", "linear_int8_static"})


def time_executor(executable: Executable, inputs: Sequence[torch.Tensor],
                  runs: int = TIMED_RUNS, warmup: bool = True) -> float:
    """Seconds of the fastest of ``runs`` calls (after one warm-up call if ``warmup``)."""
    return best_ms(lambda: executable.run(inputs), runs, warmup=int(warmup)) / 1e3


OPTIONS = {"executor": "'auto' (measure), 'ort', 'openvino' or 'aten'",
           "prefer": "'speed' (default: the fastest executor) or 'memory' (measure aten and "
                     "onnxruntime only: OpenVINO's session holds about 1.2-1.6x the memory "
                     "of onnxruntime's)"}
PREFER = ("speed", "memory")


@register_target("cpu", "CPU: onnxruntime, OpenVINO or the ATen executor, whichever measures "
                 "fastest", OPTIONS)
def lower_cpu(graph: Graph, ctx: LowerContext) -> Executable:
    """Lower for CPU inference, choosing the executor by measurement."""
    choice = ctx.options.get("executor", "auto")
    if choice not in EXECUTORS:
        raise AccelValueError(f"cpu target: unknown executor '{choice}'; valid: "
                              f"{', '.join(EXECUTORS)}")
    prefer = ctx.options.get("prefer", "speed")
    if prefer not in PREFER:
        raise AccelValueError(f"cpu target: prefer={prefer!r}; valid: {', '.join(PREFER)}")
    if choice == "aten":
        ctx.note(f"aten executor: {len(graph)} steps (forced by options)")
        return AtenExecutor(graph)
    missing = unsupported_nodes(graph)
    if missing:
        ops = sorted({n.op for n in missing})
        msg = (f"aten executor: {len(graph)} steps; onnxruntime/OpenVINO not used: "
               f"{len(missing)} node(s) without ONNX lowering (ops: {', '.join(ops)}; first: "
               f"{missing[0].name})")
        if choice != "auto":
            raise ExportError(f"cpu target: executor '{choice}' was requested but {msg}")
        ctx.note(msg)
        return AtenExecutor(graph)
    if choice != "auto":
        path = export_file(graph, int8_weights=int8_weights_for(host()))
        spill = _Spill(graph, enabled=not ctx.keep_weights)
        spill.release()  # the session reads the weights from the file, not from the graph
        try:
            executor = _build(choice, graph, ctx, path)
        except BaseException:
            spill.restore()
            _drop([path])
            raise
        finally:
            spill.close()
        if not ctx.keep_model:  # else the compile cache takes the file (and removes it)
            _drop([path])
            executor.model_file = None
        ctx.note(f"{executor.name} executor: {executor.threads} threads (forced by options)")
        return executor
    inputs = ctx.example_inputs
    if any(t.device.type != "cpu" for t in inputs):
        ctx.note("aten executor: inputs are not on the CPU")
        return AtenExecutor(graph)
    int8 = sum(n.op in _INT8_OPS for n in graph.nodes)
    fp32 = dequantized(graph) if int8 else None
    files: dict[str, Path] = {}  # one ONNX export per graph form, read by both runtimes

    export_failed: dict[str, ExportError] = {}
    for key, form in (("int8", graph), ("fp32", fp32)):  # exported up front: the sessions
        if form is None:  # start from these files, and the graphs' weights can then go
            continue
        try:
            files[key] = export_file(form, int8_weights=int8_weights_for(host()))
        except ExportError as e:
            export_failed[key] = e
    fp32 = None  # its weights live in its file now (sessions read the graph's structure)
    spill = _Spill(graph, enabled=not ctx.keep_weights)

    def factory(name: str) -> Callable[[], Executable]:
        base = name.removesuffix("-fp32")
        key = "fp32" if name.endswith("-fp32") else "int8"

        def make() -> Executable:
            if key in export_failed:
                raise export_failed[key]
            spill.release()  # no session holds the weights next to the graph's copy
            return _build(base, graph, ctx, files[key])  # one interface for both forms
        return make

    factories: dict[str, Callable[[], Executable]] = {}
    skip_aten = (f"aten not timed: {int8} int8 matmul(s) would run on torch._int_mm, slower "
                 "than onnxruntime's integer kernels on CPU") if int8 else None
    if skip_aten is None:  # first, while the graph still holds its weights

        def make_aten() -> Executable:
            spill.restore()  # when it won: built again after the sessions were timed
            return AtenExecutor(graph)  # (its schedule holds the weights: one at a time)
        factories["aten"] = make_aten
    for name in ("ort", "openvino", "ort-fp32", "openvino-fp32"):
        if name.startswith("openvino") and not openvino_available():
            continue
        if name.startswith("openvino") and prefer == "memory":
            continue
        if name.endswith("-fp32") and not int8:
            continue
        factories[name] = factory(name)
    best: Executable | None = None
    try:
        with ctx.timed("choice"):
            best_name, best, line, failed = _choose(factories, inputs)
    finally:
        keep = getattr(best, "model_file", None) if ctx.keep_model else None
        _drop(p for p in files.values() if p != keep)  # the winner's file: the cache's
        if best is None:
            spill.restore()  # the graph runs on aten with its own tensors
        spill.close()
    for msg in failed:
        ctx.note(f"executor not used: {msg}")
    if best is None:
        ctx.note(f"aten executor: {len(graph)} steps")
        return AtenExecutor(graph)
    ctx.note(f"executor: {best.name} (measured: {line}{'; ' + skip_aten if skip_aten else ''})"
             + ("; OpenVINO not tried (prefer=memory)" if prefer == "memory"
                and openvino_available() else ""))
    if best_name.endswith("-fp32"):
        ctx.note(f"int8 does not pay on this host ({host().describe()}): its {int8} int8 "
                 "linear(s) run as fp32 linears on the dequantized int8 weights (activations "
                 "unquantized: at least as accurate as the int8 graph the accuracy report "
                 "measures)")
    return best


class _Spill:
    """The graph's large constants, written to a temporary file and dropped from memory while
    runtime sessions are built and timed (each session reads the weights from its ONNX
    file), so compiling holds the model, one session and nothing else; mapped back from the
    file (``restore``) if the graph itself must run (aten wins, or every session failed).
    Graphs with little constant data are left alone."""

    MIN_BYTES = 64 << 20

    def __init__(self, graph: Graph, enabled: bool = True) -> None:
        self.graph = graph
        self.path: Path | None = None
        self._names: dict = {}
        self.released = False
        large = sum(t.numel() * t.element_size() for t in graph.constants.values()
                    if t.numel() * t.element_size() >= Graph.RELEASE_MIN_BYTES)
        self.worth = enabled and large >= self.MIN_BYTES

    def release(self) -> None:
        if not self.worth or self.released:
            return
        import tempfile

        d = Path(tempfile.mkdtemp(prefix="accel-weights-"))
        names = {v: f"c{i}" for i, v in enumerate(self.graph.constants)}
        try:
            torch.save({names[v]: t for v, t in self.graph.constants.items()}, d / "c.pt")
        except (OSError, RuntimeError):  # no room on disk: keep the weights in memory
            shutil.rmtree(d, ignore_errors=True)
            self.worth = False
            return
        self.path, self._names = d / "c.pt", names
        self.graph.release_constants()
        self.released = True
        trim_memory()

    def restore(self) -> None:
        if not self.released or self.path is None:
            return
        saved = torch.load(self.path, mmap=True, weights_only=True)  # pages read on use
        self.graph.constants = MappingProxyType(
            {v: saved[n] for v, n in self._names.items()})
        self.released = False

    def close(self) -> None:
        if self.path is not None:  # a mapped file stays readable once unlinked
            shutil.rmtree(self.path.parent, ignore_errors=True)
            self.path = None


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


def _drop(paths: Iterable[Path]) -> None:
    """Remove exported model files (each in its own temporary directory)."""
    for path in paths:
        shutil.rmtree(path.parent, ignore_errors=True)


def _build(name: str, graph: Graph, ctx: LowerContext,
           model_file: Path | None = None) -> Executable:
    keep = ctx.keep_model or model_file is not None  # a shared file: the target removes it
    if name == "ort":
        from accel.backends.onnx.ort import lower_onnxruntime
        return lower_onnxruntime(graph, keep_model=keep, model_file=model_file)
    from accel.backends.openvino import lower_openvino
    return lower_openvino(graph, keep_model=keep, model_file=model_file)


def _choose(factories: dict[str, Callable[[], Executable]], inputs: Sequence[torch.Tensor]
            ) -> tuple[str, Executable | None, str, list[str]]:
    """The fastest executor ``factories`` build on ``inputs``: ``(name, executor, how it was
    measured, build failures)``.

    One candidate is alive at a time, so compiling never holds two runtimes' copies of the
    weights: each is built, run once (after a warm-up call for sessions), re-timed while its
    share of :data:`CHOICE_BUDGET_S` lasts (at most :data:`TIMED_RUNS` runs) unless its
    first run is more than :data:`CLEAR_WIN` times the best so far, and dropped (its memory
    returned to the OS); the fastest is built again from the same exported file. One that
    holds more memory must be :data:`MEMORY_MARGIN` faster to win.
    """
    labels = {"ort": "onnxruntime", "openvino": "OpenVINO", "aten": "aten",
              "ort-fp32": "onnxruntime fp32-dequantized",
              "openvino-fp32": "OpenVINO fp32-dequantized"}
    share = CHOICE_BUDGET_S / max(1, len(factories))
    best_name, best_t = "aten", float("inf")
    parts, failed = [], []
    for name, make in factories.items():
        try:
            ex = make()
        except ExportError as e:
            failed.append(f"{labels[name]}: {e}")
            continue
        first = time_executor(ex, inputs, runs=1, warmup=name != "aten")
        t, how = first, "1 run"
        if first <= CLEAR_WIN * best_t:
            runs = max(1, min(TIMED_RUNS, int(share / max(first, 1e-9))))
            if runs > 1:
                t, how = time_executor(ex, inputs, runs=runs, warmup=False), f"best of {runs}"
        threads = f", {ex.threads} threads" if hasattr(ex, "threads") else ""
        parts.append(f"{labels[name]} {t * 1e3:.2f} ms{threads} ({how})")
        lighter = _MEMORY_RANK[name] <= _MEMORY_RANK.get(best_name, 0) or best_t == float("inf")
        if t < best_t * (1.0 if lighter else 1.0 - MEMORY_MARGIN):
            best_name, best_t = name, t
        del ex  # built again if it wins: only one session alive at a time
        trim_memory()  # a dropped session's pages go back to the OS before the next one
        time.sleep(SWITCH_PAUSE_S)
    if best_t == float("inf"):
        return "aten", None, "", failed
    best = factories[best_name]()
    return best_name, best, ("; ".join(parts) + "; one at a time, the fastest built again (a "
                             f"heavier runtime must be {MEMORY_MARGIN:.0%} faster)"), failed
