"""Token reduction benchmark: accuracy vs r / keep on the digits ViT, FLOPs and CPU latency vs
r on ViT-S/16 and ViT-B/16 shapes, compiled with vs without token reduction.

    python benchmarks/tome.py                 # digits + vit_s16 (batch 8) + vit_b16 (batch 2)
    python benchmarks/tome.py --quick         # digits only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import accel
from accel.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import train_digits_vit  # noqa: E402


def _latency_ms(fn, x: torch.Tensor, runs: int = 5) -> float:  # noqa: ANN001
    """Median wall time of fn(x) in ms after one warm-up call."""
    fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _compile(model, x: torch.Tensor, reduction: str):  # noqa: ANN001, ANN202
    """accel.compile on the cpu target with the default pipeline plus a token-reduction pass."""
    pipeline = "default" + (f",{reduction}" if reduction else "")
    return accel.compile(model, (x,), pipeline=pipeline, target="cpu")


def digits_table(batch: int = 256) -> None:
    """Top-1, FLOPs and latency of the digits ViT vs ToMe r and prune keep ratio."""
    task = train_digits_vit()
    x = task.x_test[:batch]
    base = _compile(task.model, x, "")
    base_acc = task.accuracy(base, task.x_test, task.y_test, batch)
    base_flops, base_ms = base.graph.flops(), _latency_ms(base, x)
    print(f"digits ViT (vit_tiny_digits, patch 2, 17 tokens), test set {len(task.y_test)}, "
          f"batch {batch}")
    print(f"{'reduction':40s} {'top-1':>7s} {'Δpt':>6s} {'FLOPs':>7s} {'ms':>7s} {'speedup':>7s}")
    print(f"{'none':40s} {base_acc:7.2f} {0:6.2f} {1:7.2f} {base_ms:7.2f} {1:7.2f}")
    variants = [f"tome{{r={r}}}" for r in (1, 2, 3, 4)]
    variants += ["tome{r=3,schedule=decreasing}", "tome{r=4,prop_attn=false}"]
    variants += [f"prune-tokens{{keep={k}}}" for k in (0.9, 0.7, 0.5)]
    variants += ["prune-tokens{keep=0.5,layers=[0,1,2]}",
                 "prune-tokens{schedule=pyramid,keeps=[0.5,0.25,0.125]}"]
    for spec in variants:
        c = _compile(task.model, x, spec)
        acc = task.accuracy(c, task.x_test, task.y_test, batch)
        ms = _latency_ms(c, x)
        print(f"{spec:40s} {acc:7.2f} {acc - base_acc:6.2f} "
              f"{c.graph.flops() / base_flops:7.2f} {ms:7.2f} {base_ms / ms:7.2f}")


def shapes_table(name: str, batch: int, rs: tuple[int, ...]) -> None:
    """FLOPs and CPU latency of a random-weight ViT vs r (compiled with vs without ToMe)."""
    model, (x,) = get_model(name, batch_size=batch)
    base = _compile(model, x, "")
    base_flops, base_ms = base.graph.flops(), _latency_ms(base, x, runs=3)
    print(f"\n{name} batch {batch}: baseline {base_flops / 1e9:.2f} GFLOPs, {base_ms:.1f} ms")
    print(f"{'r':>4s} {'GFLOPs':>8s} {'FLOPs':>6s} {'ms':>8s} {'speedup':>7s}")
    for r in rs:
        c = _compile(model, x, f"tome{{r={r}}}")
        ms = _latency_ms(c, x, runs=3)
        flops = c.graph.flops()
        print(f"{r:4d} {flops / 1e9:8.2f} {flops / base_flops:6.2f} {ms:8.1f} "
              f"{base_ms / ms:7.2f}")


def main() -> None:
    """Run the benchmark tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits table only")
    args = parser.parse_args()
    torch.manual_seed(0)
    digits_table()
    if not args.quick:
        shapes_table("vit_s16", 8, (8, 13, 16))
        shapes_table("vit_b16", 2, (8, 16))


if __name__ == "__main__":
    main()
