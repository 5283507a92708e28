"""Foundation benchmark: eager vs torch.compile (inductor) vs accel on CPU.

For each built-in model (vit_s16 batch 8, bert_base batch 1 seq 128, resnet50 batch 1,
repvgg_a0 batch 1): the median latency of repeated runs for eager PyTorch,
``torch.compile`` with its default backend (TorchInductor) and ``accel.compile`` with the
``default`` pipeline on the ``reference`` target, the ratios to eager, and the numerical
error. Requirement: accel (reference executor) stays within 10% of eager, i.e. its runtime
overhead is small. Results go to benchmarks/results/foundation.json.

    python benchmarks/foundation.py [--repeats 20] [--threads N] [--quick] [--no-inductor]

``--quick`` uses the small test models (a functional check, not a measurement). CPU
latency on a shared machine is noisy: compare medians, rerun on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

import accel
from accel.models import get_model
from accel.testing import max_errors
from accel.timing import median_ms

FULL = [("vit_s16", {"batch_size": 8}), ("bert_base", {"batch_size": 1, "seq_len": 128}),
        ("resnet50", {"batch_size": 1}), ("repvgg_a0", {"batch_size": 1})]
QUICK = [("vit_small_test", {"batch_size": 2}), ("bert_small_test", {"batch_size": 1}),
         ("resnet_small_test", {"batch_size": 1}), ("repvgg_small_test", {"batch_size": 1})]
RESULTS = Path(__file__).parent / "results" / "foundation.json"


def bench_model(name: str, kwargs: dict[str, Any], repeats: int, inductor: bool) -> dict:
    """Latencies, ratios and errors of one model."""
    model, inputs = get_model(name, **kwargs)
    row: dict[str, Any] = {"model": name, "inputs": [list(t.shape) for t in inputs]}
    with torch.no_grad():
        ref = model(*inputs)
        row["eager_ms"] = median_ms(lambda: model(*inputs), repeats)
        t0 = time.perf_counter()
        compiled = accel.compile(model, inputs, pipeline="default", target="reference")
        row["accel_compile_s"] = time.perf_counter() - t0
        row["accel_ms"] = median_ms(lambda: compiled(*inputs), repeats)
        row["accel_max_abs_err"] = max_errors(ref, compiled(*inputs))[0]
        row["accel_fallbacks"] = len(compiled.report.fallbacks)
        if inductor:
            torch._dynamo.reset()
            opt = torch.compile(model)
            t0 = time.perf_counter()
            opt(*inputs)
            row["inductor_compile_s"] = time.perf_counter() - t0
            row["inductor_ms"] = median_ms(lambda: opt(*inputs), repeats)
            row["inductor_max_abs_err"] = max_errors(ref, opt(*inputs))[0]
    row["accel_vs_eager"] = row["accel_ms"] / row["eager_ms"]
    row["within_10pct_of_eager"] = row["accel_vs_eager"] <= 1.10
    if inductor:
        row["inductor_vs_eager"] = row["inductor_ms"] / row["eager_ms"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, write the JSON."""
    from accel.host import header, host

    print(header(), flush=True)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="small test models, few repeats")
    p.add_argument("--no-inductor", action="store_true", help="skip torch.compile (inductor)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models, repeats = (QUICK, min(args.repeats, 5)) if args.quick else (FULL, args.repeats)
    rows = []
    head = (f"{'model':<20} {'eager ms':>9} {'inductor ms':>12} {'accel ms':>9} "
            f"{'ind/eager':>9} {'accel/eager':>11} {'<=1.10':>6} {'accel err':>9}")
    print(head)
    print("-" * len(head))
    for name, kwargs in models:
        r = bench_model(name, kwargs, repeats, inductor=not args.no_inductor)
        rows.append(r)
        ind = f"{r['inductor_ms']:>12.2f}" if "inductor_ms" in r else f"{'-':>12}"
        ind_ratio = f"{r['inductor_vs_eager']:>9.2f}" if "inductor_ms" in r else f"{'-':>9}"
        print(f"{name:<20} {r['eager_ms']:>9.2f} {ind} {r['accel_ms']:>9.2f} {ind_ratio} "
              f"{r['accel_vs_eager']:>11.3f} {'yes' if r['within_10pct_of_eager'] else 'NO':>6} "
              f"{r['accel_max_abs_err']:>9.2g}", flush=True)
    result = {"host": host().describe(), "quick": args.quick, "repeats": repeats,
              "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.machine(),
              "processor": platform.processor(), "models": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")
    return 0 if all(r["within_10pct_of_eager"] for r in rows) or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
