"""Compile time against graph size: deep MLPs of 250/500/1000/2000 captured nodes.

    python benchmarks/compile_scaling.py [--sizes 250,500,1000,2000] [--repeats 1]

Prints, per size, the wall time of ``accel.compile``, of the pass pipeline within it (the
report's per-pass times) and of a bare ``torch.export`` of the same model (the largest part
of capture), with each one's ratio to the previous size: linear growth shows as a ratio
near 2 per doubling of the graph.
"""

from __future__ import annotations

import argparse
import time

import torch

import accel


def deep_mlp(nodes: int, width: int = 8) -> torch.nn.Module:
    """A Linear/ReLU stack whose captured graph has ``nodes`` nodes (two per layer)."""
    layers: list[torch.nn.Module] = []
    for _ in range(nodes // 2):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).eval()


def measure(nodes: int, repeats: int) -> tuple[int, float, float, float]:
    """(captured nodes, compile s, passes s, torch.export s) for one size, best of repeats."""
    model, x = deep_mlp(nodes), torch.randn(2, 8)
    best_compile = best_export = best_passes = float("inf")
    captured = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            torch.export.export(model, (x,), strict=False)
        best_export = min(best_export, time.perf_counter() - t0)
        t0 = time.perf_counter()
        compiled = accel.compile(model, (x,))
        best_compile = min(best_compile, time.perf_counter() - t0)
        best_passes = min(best_passes, sum(p.seconds for p in compiled.report.passes))
        captured = compiled.report.passes[0].nodes_before if compiled.report.passes else 0
    return captured, best_compile, best_passes, best_export


def main() -> None:
    """Run the sweep and print a table."""
    from accel.host import header

    print(header(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    accel.compile(deep_mlp(4), (torch.randn(2, 8),))  # warm up torch.export and the registry
    print(f"{'nodes':>6} {'compile s':>10} {'passes s':>9} {'export s':>9}   ratios vs previous "
          "size (compile / passes / export)")
    prev: tuple[float, float, float] | None = None
    for size in (int(s) for s in args.sizes.split(",")):
        nodes, total, passes, export = measure(size, args.repeats)
        now = (total, passes, export)
        ratios = " / ".join(f"{a / b:.2f}" for a, b in zip(now, prev, strict=True)) if prev \
            else "-"
        print(f"{nodes:>6} {total:>10.2f} {passes:>9.3f} {export:>9.2f}   {ratios}", flush=True)
        prev = now

if __name__ == "__main__":
    main()
