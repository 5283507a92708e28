"""``accel bench``: models x systems x metrics, written as JSON, markdown and a PNG plot.

    accel bench --quick                                  # smoke run, tiny models (~1-2 min)
    accel bench --models vit_s16,digits_vit              # part of the full run
    accel bench --models resnet50 --systems eager,ort-fp32,accel-default

Rows of earlier runs in the same ``--out`` folder are kept (a re-measured (model, system)
replaces its old row), so the full suite can be run piecewise; ``--fresh`` starts over.
The library measures and reports; judging the rows against targets is the caller's
(``run_benchmark(..., verdicts=fn)``: benchmarks/run.py passes this project's targets).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from accel.bench.measure import Settings, build, measure, measure_isolated
from accel.bench.report import add_derived, environment, load_rows, write
from accel.bench.suite import FULL_CASES, QUICK_CASES, WorkloadUnavailable, get_case
from accel.bench.systems import SYSTEMS, get_system
from accel.cli import command

__all__ = ["Verdicts", "add_arguments", "run_benchmark", "run_from_args"]

DEFAULT_OUT = Path("benchmarks") / "results"
"""Default results folder, relative to the working directory (the repository root)."""
Verdicts = Callable[[list[dict[str, Any]]], list[dict[str, str]]]
"""Rows -> ``[{"target", "verdict" (met / missed / n/a), "detail"}]``."""
QUICK_SETTINGS = dict(warmup=1, min_iters=3, max_iters=10, time_budget_s=0.5)
FULL_SETTINGS = dict(warmup=2, min_iters=5, max_iters=50, time_budget_s=8.0)


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, disable=not enabled, unit="run", file=sys.stderr,
                dynamic_ncols=True)


def _prepare_digits(models: list[str]) -> None:
    """Load (or train) the digits ViTs once, so isolated workers find them shipped or cached
    instead of each training its own."""
    for name in models:
        if name.startswith("digits_vit"):
            try:
                get_case(name).build()
            except WorkloadUnavailable:
                pass


def run_benchmark(models: list[str], systems: list[str], settings: Settings,
                  out: Path, fresh: bool = False, progress: bool = True,
                  verdicts: Verdicts | None = None) -> dict[str, Any]:
    """Measure every (model, system) pair, write the results files, return the results.

    ``verdicts`` judges all rows (this run's and the kept ones) against the caller's targets.
    """
    for name in models:
        get_case(name)
    for name in systems:
        get_system(name)
    if settings.isolate:
        _prepare_digits(models)
    rows: list[dict[str, Any]] = []
    bar = _progress(len(models) * len(systems), progress)
    for model in models:
        workload, unavailable = None, None
        if not settings.isolate:
            try:
                workload = build(model, settings.device)
            except WorkloadUnavailable as e:
                unavailable = f"n/a (not available: {e})"
        for system in systems:
            if bar is not None:
                bar.set_description(f"{model} / {system}")
            if unavailable:
                row: dict[str, Any] = {"system": system, "status": unavailable}
            elif settings.isolate:
                row = measure_isolated(model, system, settings)
            else:
                row = measure(workload, system, settings)
            row = {"model": model, **row,
                   "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
            rows.append(row)
            if bar is not None:
                bar.update(1)
            else:
                print(f"{model} / {system}: {row['status']}", file=sys.stderr)
    if bar is not None:
        bar.close()
    if not fresh:
        measured = {(r["model"], r["system"]) for r in rows}
        rows = [r for r in load_rows(out) if (r["model"], r["system"]) not in measured] + rows
    add_derived(rows)
    results = {"environment": environment(settings.device), "settings": asdict(settings),
               "rows": rows, "targets": verdicts(rows) if verdicts else []}
    results["files"] = {k: str(v) for k, v in write(results, out).items()}
    return results


def _split(text: str | None, default: list[str]) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()] if text else default


def header_lines(env: dict[str, Any]) -> list[str]:
    """The lines above the summary table: host (CPU, cores, ISA), device and versions."""
    gpu = f" ({env['gpu']})" if env.get("gpu") else ""
    isa = " ".join(env.get("isa", [])) or "-"
    ov = str(env.get("openvino", "-")).split("-")[0]  # 2026.4.1-22982-...: the release
    return [f"host: {env.get('host') or env.get('cpu')} [isa: {isa}]",
            f"device: {env['device']}{gpu}, torch {env['torch']} ({env['torch_threads']} "
            f"threads), onnxruntime {env['onnxruntime']}, openvino {ov}, "
            f"accel {env['accel']}"]


def _print_summary(results: dict[str, Any]) -> None:
    print("\n".join(header_lines(results["environment"])))
    print(f"{'model':<18} {'system':<14} {'median ms':>10} {'speedup':>8} {'compile s':>9} "
          f"{'peak MB':>8}  fidelity / status")
    for r in results["rows"]:
        if r["status"] != "ok":
            print(f"{r['model']:<18} {r['system']:<14} {r['status']}")
            continue
        fid = (f"top-1 {r['top1']:.2f}%" if r.get("top1") is not None
               else f"cos {r['cosine']:.6f} max|d| {r['max_abs']:.2e}")
        speed = f"{r['speedup']:.2f}x" if r.get("speedup") else "–"
        print(f"{r['model']:<18} {r['system']:<14} {r['median_ms']:>10.2f} {speed:>8} "
              f"{r['compile_s']:>9.1f} {r['peak_mem_mb']:>8.0f}  {fid}")
    if results["targets"]:
        print("\ntargets:")
    for t in results["targets"]:
        print(f"  [{t['verdict']}] {t['target']} ({t['detail']})")
    print("\nwrote " + ", ".join(results["files"].values()))


@command("bench", "benchmark models x systems (eager, inductor, onnxruntime, accel presets)")
def _bench(args: argparse.Namespace) -> int:
    return run_from_args(args)


def run_from_args(args: argparse.Namespace, verdicts: Verdicts | None = None) -> int:
    """Run the benchmark as the command line (see :func:`add_arguments`) asks."""
    cases = QUICK_CASES if args.quick else FULL_CASES
    models = _split(args.models, [c.name for c in cases])
    systems = _split(args.systems, [s.name for s in SYSTEMS.values()
                                    if s.quick or not args.quick])
    if args.list:
        for c in cases:
            print(f"model  {c.name:<18} {c.description}")
        for s in SYSTEMS.values():
            print(f"system {s.name:<18} {s.description}")
        return 0
    device = args.device or ("cuda" if _cuda() else "cpu")
    base = QUICK_SETTINGS if args.quick else FULL_SETTINGS
    isolate = (not args.quick) if args.isolate is None else args.isolate
    settings = Settings(device=device, isolate=isolate, job_timeout_s=args.job_timeout,
                        threads=args.threads,
                        **{**base, **({"time_budget_s": args.time_budget}
                                      if args.time_budget else {})})
    out = Path(args.out) if args.out else DEFAULT_OUT / ("quick" if args.quick else "")
    results = run_benchmark(models, systems, settings, out, fresh=args.fresh,
                            progress=not args.no_progress, verdicts=verdicts)
    _print_summary(results)
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@_bench.args
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``accel bench``."""
    p.add_argument("--quick", action="store_true", help="smoke run: tiny models, few iterations")
    p.add_argument("--models", help="comma-separated model names (see --list)")
    p.add_argument("--systems", help="comma-separated systems (see --list)")
    p.add_argument("--list", action="store_true", help="list models and systems, run nothing")
    p.add_argument("--out", help="results folder (default benchmarks/results[/quick])")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when present")
    p.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime "
                   "(default: torch's default; 1 gives steadier numbers on a busy machine)")
    p.add_argument("--time-budget", type=float, help="seconds of timed calls per system")
    p.add_argument("--job-timeout", type=float, default=900.0,
                   help="seconds before an isolated (model, system) run is killed")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="one subprocess per (model, system) for clean peak memory "
                        "(default: on, off with --quick)")
    p.add_argument("--fresh", action="store_true", help="drop rows of earlier runs in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
