"""This project's acceptance targets, judged on the rows of an ``accel bench`` run.

The library measures (:mod:`accel.bench`); what counts as good enough for accel is the
project's, so it lives here and benchmarks/run.py passes it to the run:

- per model: accel's lossless ``default`` at least as fast as onnxruntime fp32;
- ViT-S/16 batch 8: accel ``fastest`` at least 5x eager;
- per model scored by top-1 (the digits ViT): ``fastest`` loses at most 0.5 points.
"""

from __future__ import annotations

from typing import Any

LOSSLESS_PRESET, FASTEST_PRESET = "accel-default", "accel-fastest"
SPEEDUP_MODEL, SPEEDUP_TARGET = "vit_s16", 5.0
ACCURACY_MODEL, MAX_TOP1_DROP = "digits_vit", 0.5


def _row(rows: list[dict[str, Any]], model: str, system: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["model"] == model and r["system"] == system), None)


def _ok(r: dict[str, Any] | None) -> bool:
    return r is not None and r.get("status") == "ok"


def targets(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each target with a verdict: met, missed, or n/a (with the reason)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        acc, ort = _row(rows, model, LOSSLESS_PRESET), _row(rows, model, "ort-fp32")
        name = f"{model}: accel default (lossless) at least as fast as onnxruntime fp32"
        if _ok(acc) and _ok(ort):
            met = acc["median_ms"] <= ort["median_ms"]
            detail = f"{acc['median_ms']:.2f} ms vs {ort['median_ms']:.2f} ms"
            out.append({"target": name, "verdict": "met" if met else "missed", "detail": detail})
        else:
            missing = [s for s, r in ((LOSSLESS_PRESET, acc), ("ort-fp32", ort)) if not _ok(r)]
            out.append({"target": name, "verdict": "n/a",
                        "detail": f"no successful {' / '.join(missing)} row"})
    fast = _row(rows, SPEEDUP_MODEL, FASTEST_PRESET)
    name = f"{SPEEDUP_MODEL} batch 8: accel fastest >= {SPEEDUP_TARGET:g}x eager"
    if _ok(fast) and fast.get("speedup"):
        out.append({"target": name, "verdict": "met" if fast["speedup"] >= SPEEDUP_TARGET
                    else "missed", "detail": f"{fast['speedup']:.2f}x"})
    else:
        out.append({"target": name, "verdict": "n/a", "detail": "no successful "
                    f"{SPEEDUP_MODEL} {FASTEST_PRESET} and eager rows in this run"})
    scored = [m for m in dict.fromkeys(r["model"] for r in rows)
              if any(r.get("top1") is not None for r in rows if r["model"] == m)]
    for model in scored or [ACCURACY_MODEL]:
        digits = _row(rows, model, FASTEST_PRESET)
        name = f"{model}: accel fastest top-1 drop <= {MAX_TOP1_DROP} points"
        if _ok(digits) and digits.get("top1") is not None:
            drop = digits["top1_eager"] - digits["top1"]
            out.append({"target": name, "verdict": "met" if drop <= MAX_TOP1_DROP else "missed",
                        "detail": f"{digits['top1_eager']:.2f}% -> {digits['top1']:.2f}% "
                                  f"(drop {drop:.2f})"})
        else:
            out.append({"target": name, "verdict": "n/a",
                        "detail": f"no successful {model} {FASTEST_PRESET} row"})
    return out
