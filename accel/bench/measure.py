"""Measuring one (model, system) pair: compile time, latency, peak memory, fidelity/accuracy.

Peak memory is the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` before the system is prepared; ``ru_maxrss`` where that is not
possible), or ``torch.cuda.max_memory_allocated`` on CUDA. With ``isolate=True`` every pair
runs in a fresh ``python -m accel.bench.measure`` subprocess, so the peak includes nothing a
previous system left behind; in-process runs (the --quick default) share one allocator and
the figure is indicative only.
"""

from __future__ import annotations

import json
import math
import re
import resource
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

import torch

from accel.bench.suite import Workload, WorkloadUnavailable, get_case
from accel.bench.systems import Runner, SystemUnavailable, get_system


@dataclass(frozen=True)
class Settings:
    """How hard to measure: timed iterations are bounded by count and by seconds."""

    device: str = "cpu"
    warmup: int = 2
    min_iters: int = 5
    max_iters: int = 50
    time_budget_s: float = 8.0
    """Stop timing once this much time has been spent (after ``min_iters``)."""
    isolate: bool = True
    threads: int | None = None
    """CPU threads for torch and onnxruntime alike (None: torch's default)."""
    job_timeout_s: float = 900.0
    """A subprocess running longer is killed and its row reads "failed: timeout"."""


def _proc_status_mb(field: str) -> float | None:
    """``field`` (e.g. VmRSS) of /proc/self/status in MiB, None where it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"{field}:\s+(\d+)\s+kB", f.read())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def _rss_hwm_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mb() -> float:
    rss = _proc_status_mb("VmRSS")
    return rss if rss is not None else float("nan")


def _reset_peak(device: str) -> str:
    """Reset the peak-memory counter; returns how peak memory is measured."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return "cuda max_memory_allocated"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM (reset per system)"
    except OSError:
        return "ru_maxrss (not resettable)"


def _peak_mb(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return _rss_hwm_mb()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_runs(fn: Runner, inputs: tuple, s: Settings) -> list[float]:
    """Wall-clock seconds of each timed call after warmup."""
    for _ in range(s.warmup):
        fn(*inputs)
    _sync(s.device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < s.max_iters and (len(times) < s.min_iters
                                        or time.perf_counter() - start < s.time_budget_s):
        t0 = time.perf_counter()
        fn(*inputs)
        _sync(s.device)
        times.append(time.perf_counter() - t0)
    return times


def _fidelity(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    a = out.detach().float().cpu().flatten().double()
    b = ref.detach().float().cpu().flatten().double()
    if a.shape != b.shape:
        return {"cosine": float("nan"), "max_abs": float("nan")}
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    return {"cosine": cos, "max_abs": (a - b).abs().max().item()}


def _top1(out: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (out.argmax(-1).cpu() == labels).float().mean().item()


def _to_device(w: Workload, device: str) -> Workload:
    if device == "cpu":
        return w
    move = lambda ts: tuple(t.to(device) for t in ts)  # noqa: E731
    return Workload(w.model.to(device), move(w.inputs), [move(c) for c in w.calibration],
                    w.labels)


def measure(w: Workload, system_name: str, s: Settings) -> dict[str, Any]:
    """Prepare ``system_name`` on the workload and measure it; never raises."""
    row: dict[str, Any] = {"system": system_name, "status": "ok"}
    try:
        system = get_system(system_name)
        if s.threads:
            torch.set_num_threads(s.threads)
        method = _reset_peak(s.device)
        base = torch.cuda.memory_allocated() / 2**20 if s.device == "cuda" else _rss_now_mb()
        t0 = time.perf_counter()
        with torch.no_grad():
            fn = system.prepare(w, s.device)
            t_prepared = time.perf_counter()
            out = fn(*w.inputs)
            _sync(s.device)
            first_call = time.perf_counter() - t_prepared
            times = _time_runs(fn, w.inputs, s)
        peak = _peak_mb(s.device)
        qs = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
        median = statistics.median(times)
        row.update(
            median_ms=median * 1e3, p25_ms=qs[0] * 1e3, p75_ms=qs[2] * 1e3,
            min_ms=min(times) * 1e3, max_ms=max(times) * 1e3, iters=len(times),
            compile_s=max(0.0, (t_prepared - t0) + first_call - median),
            peak_mem_mb=peak, mem_over_model_mb=max(0.0, peak - base), mem_method=method)
        report = getattr(fn, "report", None)  # accel systems: the executor the target chose
        if report is not None:
            row["executor"] = report.executor
            row["compile_stages"] = dict(report.stages)  # seconds: capture, passes, ...
        with torch.no_grad():
            ref = w.model(*w.inputs)
        row.update(_fidelity(out, ref))
        if w.labels is not None:
            row["top1"] = _top1(out, w.labels)
            row["top1_eager"] = _top1(ref, w.labels)
    except (SystemUnavailable, WorkloadUnavailable) as e:
        row["status"] = f"n/a (not available: {e})"
    except Exception as e:  # noqa: BLE001 - a failing system is a result, not a crash
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        row["status"] = f"failed: {type(e).__name__}: {msg}"
        row["traceback"] = traceback.format_exc(limit=6)
    return row


def build(model_name: str, device: str) -> Workload:
    """Build the named case's workload on ``device``."""
    return _to_device(get_case(model_name).build(), device)


_MARK = "ACCEL-BENCH-RESULT "


def measure_isolated(model_name: str, system_name: str, s: Settings) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter; never raises."""
    job = json.dumps({"model": model_name, "system": system_name, "settings": asdict(s)})
    try:
        proc = subprocess.run([sys.executable, "-m", "accel.bench.measure", job],
                              capture_output=True, text=True, timeout=s.job_timeout_s)
    except subprocess.TimeoutExpired:
        return {"system": system_name, "status": f"failed: timeout after {s.job_timeout_s:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"system": system_name,
            "status": f"failed: worker exited {proc.returncode}: {tail[0][:200]}"}


def _worker(job_json: str) -> int:
    job = json.loads(job_json)
    s = Settings(**job["settings"])
    try:
        w = build(job["model"], s.device)
    except WorkloadUnavailable as e:
        row: dict[str, Any] = {"system": job["system"], "status": f"n/a (not available: {e})"}
    else:
        row = measure(w, job["system"], s)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in row.items()}
    print(_MARK + json.dumps(clean), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
