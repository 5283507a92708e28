"""The prepared H100/H200 device check of the ``cuda`` target, one JSON file in 8 minutes.

One run measures, in this order:

1. the environment: device, driver, torch/Triton/CUDA versions;
2. ``pytest -m cuda`` in a subprocess (pass/fail counts, the output's last lines), while
   this process computes the roofline estimate of each end-to-end model (CPU only:
   :mod:`accel.backends.triton.aot` compiles its kernels for the device's architecture);
3. each Triton template's achieved TFLOP/s and TB/s as a share of the device's data-sheet
   peaks (:data:`accel.backends.triton.aot.DEVICES`);
4. end to end, ViT-B/16, BERT-base (seq 128) and ResNet-50 at fp16, batch 8: eager,
   ``torch.compile`` (inductor, default mode), ``accel.compile(target="cuda")`` and, for
   the ViT only, accel with token merging (``default,tome{r=8}``), timed in paired rounds
   (the systems interleaved, the order alternating), next to the roofline estimate.

A time budget (``--budget-s``) skips the stages that would not fit; the JSON names them.

    python benchmarks/gpu.py                      # everything, JSON to benchmarks/results/
    python benchmarks/gpu.py --quick              # fewer rounds and iterations
    python benchmarks/gpu.py --no-pytest          # skip pytest -m cuda
    python benchmarks/gpu.py --no-e2e             # no end-to-end models (nor their estimates)
    python benchmarks/gpu.py --models vit_b16 --budget-s 200 --out /tmp/gpu.json

Needs a CUDA device; without one it says so and exits with status 0. It exits with status
0 when it ran to the end: test failures and skipped stages are in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from accel.backends.triton.aot import DevicePeaks

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
E2E_MODELS = ("vit_b16", "bert_base", "resnet50")
TOME_PIPELINE = "default,tome{r=8}"
TOME_MODELS = frozenset({"vit_b16"})
"""Models token merging applies to (it needs ViT blocks)."""

PYTEST_TIMEOUT_S = 150.0
PYTEST_TAIL_LINES = 60
ESTIMATE_COVERS = "Triton kernels only"
ESTIMATE_NOTE = ("ops left to aten (such as ResNet-50's convolutions) are not in the estimate; "
                 "an estimate from data-sheet peaks, not a measurement")

NEED_S: dict[str, float] = {"pytest": 30.0, "estimate": 25.0, "templates": 45.0,
                            "model": 60.0, "torch_compile": 75.0, "accel": 60.0,
                            "accel_tome": 60.0}
"""Seconds of budget a stage needs left to start, with less it is skipped: guesses for a
fresh H100/H200 host, compiles included (``first_call_s`` in the JSON says what they took).
A started stage runs to its end, so the run may pass the budget by what a stage takes over
its guess; the 450 s default leaves 30 s of the 8 minutes for that."""


# ---- budget and progress -----------------------------------------------------------------


@dataclass
class Budget:
    """The run's time budget: each stage asks before it starts, and is skipped (and recorded)
    when too little is left."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Seconds of budget left."""
        return self.seconds - self.elapsed()

    def allows(self, stage: str, need_s: float) -> bool:
        """Whether ``stage`` (needing about ``need_s``) may start; records it if not."""
        if self.left() >= need_s:
            return True
        reason = f"{max(0.0, self.left()):.0f} s of budget left, needs about {need_s:.0f} s"
        self.skip(stage, reason)
        return False

    def skip(self, stage: str, reason: str) -> None:
        """Record ``stage`` as skipped."""
        self.skipped.append({"stage": stage, "reason": reason})
        self.log(f"skipped {stage}: {reason}")

    def log(self, line: str) -> None:
        """A progress line, with the seconds since the start."""
        print(f"[{self.elapsed():5.0f} s] {line}", flush=True)


# ---- environment ---------------------------------------------------------------------------


def _command_output(cmd: list[str], timeout_s: float = 10.0) -> str | None:
    """First line of ``cmd``'s output, or ``None`` when it is missing, fails or hangs."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=True, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if lines else None


def environment() -> dict[str, Any]:
    """Device, driver and library versions for the results file."""
    import triton

    env: dict[str, Any] = {
        "device": None, "driver_version": _command_output(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        "torch": torch.__version__, "triton": triton.__version__, "cuda": torch.version.cuda,
        "python": sys.version.split()[0], "git_commit": _command_output(
            ["git", "rev-parse", "--short", "HEAD"]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(device=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count)
    return env


def device_peaks(name: str) -> DevicePeaks | None:
    """The data-sheet :class:`~accel.backends.triton.aot.DevicePeaks` of the device ``name``
    (``NVIDIA H200`` -> ``H200``), or ``None`` for a device the roofline does not know."""
    from accel.backends.triton import aot
    from accel.errors import AccelValueError

    try:
        return aot._device(name)
    except AccelValueError:
        return None


def _device_key(name: str) -> str | None:
    """The :data:`~accel.backends.triton.aot.DEVICES` key of the device ``name``."""
    from accel.backends.triton import aot

    peaks = device_peaks(name)
    return next((k for k, v in aot.DEVICES.items() if v is peaks), None)


def _device_arch() -> str | None:
    """The ahead-of-time architecture of the current device (``sm_90a`` on Hopper)."""
    from accel.backends.triton import aot

    capability = torch.cuda.get_device_capability()
    return next((a for a, cc in aot.ARCHS.items() if cc == capability), None)


# ---- pytest -m cuda ------------------------------------------------------------------------


@dataclass
class PytestRun:
    """``pytest -m cuda`` running in its own process group, its output going to a file."""

    proc: subprocess.Popen
    output: Any
    start: float
    timeout_s: float
    """Seconds from the start after which its process group is killed."""


def start_pytest(timeout_s: float) -> PytestRun:
    """Start ``pytest -m cuda`` on the real GPU (``TRITON_INTERPRET=0``: tests/conftest.py
    sets it to 1 only when unset, and accel and Triton both read ``0`` as off), to be
    stopped after ``timeout_s``."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    output = tempfile.TemporaryFile(mode="w+")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
           "tests"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return PytestRun(proc, output, time.perf_counter(), timeout_s)


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


def pytest_counts(lines: list[str]) -> dict[str, int]:
    """Outcome counts from pytest's summary line (``3 passed, 1 skipped in 2.1s``)."""
    for line in reversed(lines):
        found = _COUNT.findall(line)
        if found and " in " in line:
            return {("errors" if k.startswith("error") else k): int(n) for n, k in found}
    return {}


def finish_pytest(run: PytestRun) -> dict[str, Any]:
    """Wait for ``run`` (killing its process group at its timeout) and summarize it: status,
    counts, the output's last lines."""
    timed_out = False
    try:
        run.proc.wait(timeout=max(1.0, run.timeout_s - (time.perf_counter() - run.start)))
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
    run.output.seek(0)
    lines = run.output.read().splitlines()
    run.output.close()
    rc = run.proc.returncode
    status = ("timeout" if timed_out else "passed" if rc == 0 else "failed" if rc == 1
              else "no tests" if rc == 5 else f"error (status {rc})")
    return {"command": "python -m pytest -q -p no:cacheprovider -m cuda tests",
            "env": {"TRITON_INTERPRET": "0"}, "timeout_s": run.timeout_s, "status": status,
            "returncode": rc, "seconds": time.perf_counter() - run.start,
            "counts": pytest_counts(lines), "tail": lines[-PYTEST_TAIL_LINES:]}


# ---- templates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateCase:
    """One template microbenchmark: a graph a single fused kernel runs."""

    name: str
    kind: str
    build: Callable[[torch.device, torch.dtype, int], object]
    """(device, dtype, scale divisor) -> (graph, inputs)."""


def _graph(shapes: dict[str, tuple[int, ...]], build: Callable, device: torch.device,
           dtype: torch.dtype) -> tuple[object, tuple[torch.Tensor, ...]]:
    from accel.ir.graph import Rewriter
    from accel.ir.types import TensorType

    rw = Rewriter()
    xs = {k: rw.add_input(k, TensorType(s, dtype, device.type)) for k, s in shapes.items()}
    rw.set_outputs(build(rw, **xs))
    graph = rw.finish("bench")
    inputs = tuple(torch.randn(v.shape, device=device, dtype=dtype) for v in graph.inputs)
    return graph, inputs


def template_cases() -> list[TemplateCase]:
    """The template microbenchmarks; ``scale`` divides the big dims (tests use a large one)."""

    def pointwise(dev: torch.device, dt: torch.dtype, s: int) -> object:
        return _graph({"x": (8192 // s, 4096), "b": (4096,)},
                      lambda rw, x, b: [rw.op("gelu", rw.op("add", x, b))], dev, dt)

    def layer_norm(dev: torch.device, dt: torch.dtype, s: int) -> object:
        def build(rw, x):  # noqa: ANN001, ANN202
            w = rw.const(torch.ones(1024, device=dev, dtype=dt))
            b = rw.const(torch.zeros(1024, device=dev, dtype=dt))
            return [rw.op("layer_norm", x, w, b, normalized_shape=(1024,))]
        return _graph({"x": (32768 // s, 1024)}, build, dev, dt)

    def softmax(dev: torch.device, dt: torch.dtype, s: int) -> object:
        return _graph({"x": (16384 // s, 2048)},
                      lambda rw, x: [rw.op("softmax", x, dim=-1)], dev, dt)

    def linear(dev: torch.device, dt: torch.dtype, s: int) -> object:
        def build(rw, x):  # noqa: ANN001, ANN202
            w = rw.const(torch.randn(4096, 4096 // s, device=dev, dtype=dt) / 64)
            b = rw.const(torch.randn(4096, device=dev, dtype=dt))
            return [rw.op("gelu", rw.op("linear", x, w, b))]
        return _graph({"x": (4096 // s, 4096 // s)}, build, dev, dt)

    def attention(dev: torch.device, dt: torch.dtype, s: int) -> object:
        shape = (8, 16, 2048 // s, 64)
        return _graph({"q": shape, "k": shape, "v": shape},
                      lambda rw, q, k, v: [rw.op("attention", q, k, v, scale=None, causal=False)],
                      dev, dt)

    return [TemplateCase("pointwise add+gelu 8192x4096", "pointwise", pointwise),
            TemplateCase("layer_norm 32768x1024", "reduction", layer_norm),
            TemplateCase("softmax 16384x2048", "reduction", softmax),
            TemplateCase("linear+bias+gelu 4096^3", "matmul", linear),
            TemplateCase("attention B8 H16 L2048 D64", "attention", attention)]


def traffic(graph: object) -> tuple[int, int]:
    """(FLOPs, minimum bytes moved: inputs, constants and outputs once) of a graph."""
    values = [*graph.inputs, *graph.constants, *graph.outputs]
    return graph.flops(), sum(v.type.nbytes for v in values)


def time_cuda(fn: Callable[[], object], iters: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    return statistics.median(_event_times(fn, iters))


def _event_times(fn: Callable[[], object], iters: int) -> list[float]:
    """Milliseconds of each of ``iters`` calls of ``fn`` (CUDA events, synchronized)."""
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def bench_templates(budget: Budget, iters: int) -> list[dict[str, Any]]:
    """Achieved TFLOP/s and TB/s of each template, and their share of the device's
    data-sheet peaks (tensor-core fp16 for matmul and attention, FP32 otherwise)."""
    from accel.targets import LowerContext, lower

    dev = torch.device("cuda")
    peaks = device_peaks(torch.cuda.get_device_name())
    rows = []
    for case in template_cases():
        row: dict[str, Any] = {"case": case.name, "kind": case.kind}
        try:
            graph, inputs = case.build(dev, torch.float16, 1)
            ctx = LowerContext()
            exe = lower(graph, "cuda", ctx)
            ms = time_cuda(lambda exe=exe, inputs=inputs: exe.run(inputs), iters)
        except Exception as e:  # noqa: BLE001 - reported, the other cases still count
            rows.append({**row, "error": repr(e)})
            budget.log(f"template {case.name}: ERROR {e!r}")
            continue
        flops, nbytes = traffic(graph)
        row.update(ms=ms, flops=flops, bytes=nbytes, tflops=flops / ms / 1e9,
                   tbps=nbytes / ms / 1e9, lowering=ctx.notes)
        line = (f"template {case.name:30s} {ms:8.3f} ms {row['tflops']:7.1f} TFLOP/s "
                f"{row['tbps']:5.2f} TB/s")
        if peaks is not None:
            peak_flops = peaks.tensor_fp16 if case.kind in ("matmul", "attention") else peaks.fp32
            bound_s = max(flops / peak_flops, nbytes / peaks.bandwidth)
            row.update(peak_flops=peak_flops, peak_bandwidth=peaks.bandwidth,
                       pct_peak_flops=100 * flops / (ms * 1e-3) / peak_flops,
                       pct_peak_bandwidth=100 * nbytes / (ms * 1e-3) / peaks.bandwidth,
                       bound="compute" if flops / peak_flops > nbytes / peaks.bandwidth
                       else "memory", pct_roofline=100 * bound_s / (ms * 1e-3))
            line += (f"  {row['pct_peak_flops']:5.1f}% peak FLOP/s "
                     f"{row['pct_peak_bandwidth']:5.1f}% peak BW ({row['bound']}-bound)")
        rows.append(row)
        budget.log(line)
    return rows


# ---- roofline estimates of the end-to-end models --------------------------------------------


def _kernel_graph(model: Any, inputs: tuple, pipeline: str, dtype: str) -> tuple[Any, tuple]:
    """The graph the ``cuda`` target would lower for the model."""
    from accel.api import kernel_graph

    return kernel_graph(model, inputs, pipeline, dtype)


def roofline_estimate(name: str, pipeline: str, batch: int, device: str,
                      arch: str) -> dict[str, Any]:
    """The roofline estimate of one model on ``device``: its Triton kernels compiled ahead of
    time for ``arch`` on the CPU, data-sheet peaks. An estimate, not a measurement."""
    from accel.backends.triton import aot
    from accel.models import get_model

    t0 = time.perf_counter()
    model, inputs = get_model(name, batch_size=batch)
    graph, inputs = _kernel_graph(model, inputs, pipeline, "fp16")
    infos = aot.compile_launches(aot.record(graph, inputs, arch), arch)
    est = aot.model_estimate(infos, graph, device=device)
    return {"roofline_estimate_ms": est["estimate_s"] * 1e3, **est, "device": device,
            "peaks": aot.DEVICES[device].name, "arch": arch, "estimate_covers": ESTIMATE_COVERS,
            "estimate_note": ESTIMATE_NOTE,
            "kernel_problems": sum(1 for i in aot.chosen(infos) if not i.ok),
            "seconds": time.perf_counter() - t0}


def roofline_estimates(budget: Budget, models: tuple[str, ...],
                       batch: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Estimates of each model's accel pipelines, keyed by (model, pipeline); a failure or
    a skip is a row with ``error`` or ``skipped``."""
    device, arch = _device_key(torch.cuda.get_device_name()), _device_arch()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in models:
        for pipeline in ("default", TOME_PIPELINE) if name in TOME_MODELS else ("default",):
            stage = f"estimate {name} {pipeline}"
            if device is None or arch is None:
                out[name, pipeline] = {"skipped": "the roofline knows no peaks or architecture"
                                                  " for this device"}
                continue
            if not budget.allows(stage, NEED_S["estimate"]):
                out[name, pipeline] = {"skipped": "time budget"}
                continue
            try:
                out[name, pipeline] = est = roofline_estimate(name, pipeline, batch, device,
                                                              arch)
                budget.log(f"{stage}: {est['roofline_estimate_ms']:.3f} ms on {device} "
                           f"({int(est['launches'])} Triton launches, "
                           f"{est['bytes'] / 1e6:.0f} MB; {est['seconds']:.0f} s)")
            except Exception as e:  # noqa: BLE001 - reported, the measurement still counts
                out[name, pipeline] = {"error": repr(e)}
                budget.log(f"{stage}: ERROR {e!r}")
    return out


# ---- end to end ----------------------------------------------------------------------------


def _half_inputs(inputs: tuple) -> tuple:
    return tuple(t.cuda().half() if t.is_floating_point() else t.cuda() for t in inputs)


def paired_times(systems: dict[str, Callable[[], object]], rounds: int,
                 iters: int) -> dict[str, list[list[float]]]:
    """Milliseconds per call of each system, per round: every round runs each system
    ``iters`` times (after 2 untimed calls), in an order that alternates round by round,
    so that drift in clocks or temperature falls on all of them alike."""
    names = list(systems)
    times: dict[str, list[list[float]]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            for _ in range(2):
                systems[n]()
            torch.cuda.synchronize()
            times[n].append(_event_times(systems[n], iters))
    return times


def _summarize(times: dict[str, list[list[float]]]) -> dict[str, dict[str, Any]]:
    """Median ms per system, and its median paired speed-up over eager (round by round)."""
    out: dict[str, dict[str, Any]] = {}
    eager = [statistics.median(r) for r in times.get("eager", [])]
    for name, per_round in times.items():
        medians = [statistics.median(r) for r in per_round]
        row: dict[str, Any] = {"ms": statistics.median([t for r in per_round for t in r]),
                               "round_medians_ms": medians}
        if eager:
            row["speedup_vs_eager"] = statistics.median(e / m for e, m in zip(eager, medians))
        out[name] = row
    return out


def _prepare_system(budget: Budget, stage: str, need_s: float, row: dict[str, Any],
                    make: Callable[[], Callable[[], object]]) -> Callable[[], object] | None:
    """Build one system and call it once (compiles and autotuning happen there), recording
    that time in ``row`` (``first_call_s``); ``None`` when skipped or failed (the reason
    in ``row``)."""
    if not budget.allows(stage, need_s):
        row["skipped"] = "time budget"
        return None
    t0 = time.perf_counter()
    try:
        fn = make()
        fn()
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - reported, the other columns still count
        row["error"] = repr(e)
        budget.log(f"{stage}: ERROR {e!r}")
        return None
    row["first_call_s"] = time.perf_counter() - t0
    budget.log(f"{stage}: ready ({row['first_call_s']:.1f} s to build and call once)")
    return fn


def bench_model(budget: Budget, name: str, batch: int, rounds: int, iters: int,
                estimates: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Eager, torch.compile, accel and (ViT) accel with token merging on one model, fp16,
    timed in paired rounds; accel columns carry the roofline estimate of the same graph."""
    import accel
    from accel.models import get_model

    model, inputs = get_model(name, batch_size=batch)
    model = model.cuda().half().eval()
    inputs = _half_inputs(inputs)
    columns: dict[str, dict[str, Any]] = {"eager": {}, "torch_compile": {},
                                          "accel": {"pipeline": "default"},
                                          "accel_tome": {"pipeline": TOME_PIPELINE}}
    makers: dict[str, tuple[float, Callable[[], Callable[[], object]]]] = {
        "eager": (0.0, lambda: lambda: model(*inputs)),
        "accel": (NEED_S["accel"], lambda: _bind(
            accel.compile(model, inputs, target="cuda"), inputs)),
        "torch_compile": (NEED_S["torch_compile"], lambda: _bind(torch.compile(model), inputs)),
        "accel_tome": (NEED_S["accel_tome"], lambda: _bind(
            accel.compile(model, inputs, pipeline=TOME_PIPELINE, target="cuda"), inputs))}
    if name not in TOME_MODELS:
        columns["accel_tome"]["not_applicable"] = "token merging applies to the ViT only"
        del makers["accel_tome"]
    systems: dict[str, Callable[[], object]] = {}
    with torch.no_grad():
        for column, (need_s, make) in makers.items():  # most wanted first
            fn = _prepare_system(budget, f"{name} {column}", need_s, columns[column], make)
            if fn is not None:
                systems[column] = fn
        if "accel" in systems:
            columns["accel"]["lowering"] = systems["accel"].compiled.report.lowering
        budget.log(f"{name}: timing {', '.join(systems)} ({rounds} rounds x {iters} iters)")
        try:
            for column, stats in _summarize(paired_times(systems, rounds, iters)).items():
                columns[column].update(stats)
        except Exception as e:  # noqa: BLE001 - reported; the estimates still count
            for column in systems:
                columns[column]["error"] = f"timing: {e!r}"
    for column, pipeline in (("accel", "default"), ("accel_tome", TOME_PIPELINE)):
        if (name, pipeline) in estimates:
            est = estimates[name, pipeline]
            columns[column]["roofline_estimate_ms"] = est.get("roofline_estimate_ms")
            columns[column]["roofline_estimate"] = est
    _print_model(budget, name, batch, columns)
    torch._dynamo.reset()
    torch.cuda.empty_cache()
    return {"model": name, "batch": batch, "dtype": "fp16", "rounds": rounds,
            "iters": iters, "systems": columns}


def _bind(compiled: Any, inputs: tuple) -> Callable[[], object]:
    """``compiled(*inputs)`` as a no-argument call, ``compiled`` kept on it."""
    def call() -> object:
        return compiled(*inputs)
    call.compiled = compiled  # type: ignore[attr-defined]
    return call


def _print_model(budget: Budget, name: str, batch: int,
                 columns: dict[str, dict[str, Any]]) -> None:
    """One line per system: median ms, speed-up over eager, roofline estimate."""
    budget.log(f"{name} b={batch} fp16:")
    for column, row in columns.items():
        if "ms" in row:
            line = f"{row['ms']:9.3f} ms  {row.get('speedup_vs_eager', float('nan')):5.2f}x eager"
        else:
            line = next((f"{k.replace('_', ' ')}: {row[k]}"
                         for k in ("not_applicable", "skipped", "error") if k in row), "no result")
        est = row.get("roofline_estimate_ms")
        if est is not None:
            line += f"   roofline estimate {est:.3f} ms (Triton kernels only)"
        print(f"    {column:14s} {line}", flush=True)


# ---- the run -------------------------------------------------------------------------------


def _write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """Run the device check; 0 when it ran to the end (and when there is no CUDA device)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and iterations")
    parser.add_argument("--no-pytest", action="store_true", help="skip pytest -m cuda")
    parser.add_argument("--no-e2e", action="store_true",
                        help="no end-to-end models (nor their estimates)")
    parser.add_argument("--models", default=",".join(E2E_MODELS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="time budget: stages that would not fit are skipped")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output path (default benchmarks/results/gpu_<time>.json)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device available; nothing to measure.")
        return 0
    budget = Budget(args.budget_s)
    out = args.out or RESULTS_DIR / f"gpu_{time.strftime('%Y%m%d_%H%M%S')}.json"
    rounds, iters = (3, 10) if args.quick else (5, 20)
    models = () if args.no_e2e else tuple(m for m in args.models.split(",") if m)
    result: dict[str, Any] = {"environment": environment(), "budget_s": args.budget_s,
                              "quick": args.quick, "skipped": budget.skipped}
    env = result["environment"]
    budget.log(f"{env['device']} (driver {env['driver_version']}), torch {env['torch']}, "
               f"triton {env['triton']}, CUDA {env['cuda']}; writing {out}")

    run = None
    if args.no_pytest:
        budget.skip("pytest", "--no-pytest")
    elif budget.allows("pytest", NEED_S["pytest"]):
        budget.log("pytest -m cuda: started (estimates computed meanwhile)")
        run = start_pytest(min(PYTEST_TIMEOUT_S, budget.left()))
    estimates = roofline_estimates(budget, models, args.batch_size)
    result["estimates"] = [{"model": m, "pipeline": p, **e} for (m, p), e in estimates.items()]
    if run is not None:
        result["pytest"] = res = finish_pytest(run)
        budget.log(f"pytest -m cuda: {res['status']} {res['counts']} ({res['seconds']:.0f} s)")
    _write(out, result)

    if budget.allows("templates", NEED_S["templates"]):
        result["templates"] = bench_templates(budget, 10 if args.quick else 50)
        _write(out, result)

    result["models"] = []
    for name in models:
        if not budget.allows(f"model {name}", NEED_S["model"]):
            continue
        try:
            row = bench_model(budget, name, args.batch_size, rounds, iters, estimates)
        except Exception as e:  # noqa: BLE001 - reported, the other models still count
            row = {"model": name, "batch": args.batch_size, "error": repr(e)}
            budget.log(f"model {name}: ERROR {e!r}")
        result["models"].append(row)
        _write(out, result)

    result["total_s"] = budget.elapsed()
    _write(out, result)
    budget.log(f"done: {len(budget.skipped)} stage(s) skipped; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
