"""Benchmark results: environment metadata, derived columns, and the JSON / markdown / PNG
files (with a verdicts section when the caller judges the rows against targets of its own,
as benchmarks/run.py does with the project's)."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import torch

from accel.host import cpu_model, host

COLUMNS = ["model", "system", "status", "median_ms", "iqr_ms", "speedup", "compile_s",
           "compile_stages", "peak_mem_mb", "mem_over_model_mb", "cosine", "max_abs", "top1",
           "executor"]
"""Markdown table columns (the JSON rows hold these and more)."""


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return "not installed"


def environment(device: str) -> dict[str, Any]:
    """Date, device, host (CPU, cores, ISA) and versions: written into every results file."""
    import accel

    profile = host()
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device,
        "host": profile.describe(),
        "isa": sorted(profile.isa),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "accel": accel.__version__,
        "python": platform.python_version(),
    }
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def add_derived(rows: list[dict[str, Any]]) -> None:
    """Fill ``speedup`` (eager median / median, same model) and ``iqr_ms`` in place."""
    eager = {r["model"]: r.get("median_ms") for r in rows
             if r["system"] == "eager" and r.get("median_ms")}
    for r in rows:
        if r.get("median_ms"):
            r["iqr_ms"] = r["p75_ms"] - r["p25_ms"]
            base = eager.get(r["model"])
            r["speedup"] = base / r["median_ms"] if base else None


def _fmt(value: Any, col: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if col == "speedup":
        return f"{value:.2f}x"
    if col == "cosine":
        return f"{value:.6f}"
    if col == "max_abs":
        return f"{value:.2e}"
    if col == "top1":
        return f"{value:.2f}%"
    if col == "compile_stages":  # e.g. "capture 3.0 / passes 0.1 / choice 5.7"
        return " / ".join(f"{k} {v:.1f}" for k, v in value.items() if v >= 0.05) or "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value).replace("|", "/")


def markdown(results: dict[str, Any]) -> str:
    """The results as a markdown page: metadata, one table, targets, method notes."""
    env = results["environment"]
    lines = ["# accel benchmark", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items()]
    lines += [f"- **settings**: {results['settings']}", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for r in results["rows"]:
        lines.append("| " + " | ".join(_fmt(r.get(c), c) for c in COLUMNS) + " |")
    if results.get("targets"):
        lines += ["", "## targets", ""]
        lines += [f"- **{t['verdict']}** — {t['target']} ({t['detail']})"
                  for t in results["targets"]]
    lines += ["", "## method", "", *(f"- {m}" for m in METHOD_NOTES), ""]
    return "\n".join(lines)


METHOD_NOTES = [
    "median_ms: median wall time of timed calls after warmup; iqr_ms = p75 - p25 "
    "(JSON also holds p25/p75/min/max and the iteration count).",
    "speedup: eager median / system median, same model and inputs.",
    "compile_s: time to prepare the system (export, compile, session creation) plus the "
    "first call, minus one median call; compile_stages (accel systems): seconds per stage of "
    "accel's compile as its report gives them (capture, passes, choice = the cpu target's "
    "executor measurement, lowering; cache = a compile-cache load).",
    "peak_mem_mb: the process's peak resident set (VmHWM reset before preparing the system; "
    "CUDA: max_memory_allocated); mem_over_model_mb: that peak minus the resident set once the "
    "model was built. With --isolate each (model, system) runs in a fresh subprocess.",
    "cosine / max_abs: against the eager fp32 output on the same inputs; top1: accuracy on the "
    "digits test split (eager top-1 in the JSON as top1_eager).",
]


def plot(results: dict[str, Any], path: Path) -> None:
    """Speedup vs fidelity (1 - cosine; top-1 drop for digits) per model, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("speedup")]
    models = list(dict.fromkeys(r["model"] for r in results["rows"]))
    cols = min(3, max(1, len(models)))
    nrows = max(1, math.ceil(len(models) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        pts = [r for r in rows if r["model"] == model]
        for r in pts:
            if r.get("top1") is not None:
                x, label = r["top1_eager"] - r["top1"], "top-1 drop (points)"
            else:
                x, label = 1.0 - (r.get("cosine") or 0.0), "1 - cosine vs eager"
            ax.scatter([x], [r["speedup"]])
            ax.annotate(r["system"], (x, r["speedup"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
            ax.set_xlabel(label)
        ax.set_xscale("symlog", linthresh=1e-6)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_title(model, fontsize=9)
        ax.set_ylabel("speedup over eager (x)")
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    env = results["environment"]
    where = env.get("host") or f"{env['cpu']} ({env['cpu_cores']} cores)"
    fig.suptitle(f"accel bench — {env['date'][:10]}, {env['device']}: {where}, "
                 f"torch {env['torch']}, ort {env['onnxruntime']}, "
                 f"openvino {str(env.get('openvino', '–')).split('-')[0]}, accel {env['accel']}",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write bench.json, bench.md and bench.png into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str))
    paths["markdown"].write_text(markdown(results))
    plot(results, paths["plot"])
    return paths


def load_rows(out: Path) -> list[dict[str, Any]]:
    """Rows of an earlier run in ``out`` (for piecewise runs), or none."""
    try:
        return json.loads((out / "bench.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return []
