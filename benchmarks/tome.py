"""Token reduction benchmark: accuracy vs r on the digits ViT (r chosen on the validation split,
reported on the test split), FLOPs and CPU latency vs r on the digits ViT, ViT-S/16 (batch 8)
and ViT-B/16 (batch 2), compiled with `default` vs `default,tome{...}`, on the `cpu` and
`reference` targets. Writes benchmarks/results/tome.json.

    python benchmarks/tome.py                 # everything (several minutes on 2 cores)
    python benchmarks/tome.py --quick         # digits accuracy table only
    python benchmarks/tome.py --runs 21       # timed runs per configuration (median)
    python benchmarks/tome.py --latency-only  # keep the JSON's accuracy table, redo latency

Latency: torch.set_num_threads(2); each configuration is timed in `rounds` interleaved rounds
(baseline and token-reduced alternate, so load from other processes hits both alike); the
reported figure is the median over all runs and `spread` is (p90 - p10) / median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import accel
from accel.models import get_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import DEFAULT_OVERRIDES, DigitsTask, train_digits_vit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tome.json"
MAX_DROP = 0.5
"""Largest accepted top-1 drop in points (validation, then reported on test)."""
TARGETS = ("cpu", "reference")


def _compile(model: torch.nn.Module, x: torch.Tensor, reduction: str, target: str = "cpu"):  # noqa: ANN202
    """accel.compile with the default pipeline plus an optional token-reduction pass."""
    pipeline = "default" + (f",{reduction}" if reduction else "")
    return accel.compile(model, (x,), pipeline=pipeline, target=target)


def _time_interleaved(fns: dict[str, Callable], x: torch.Tensor, runs: int,
                      rounds: int = 3) -> dict[str, dict[str, float]]:
    """Per name: median ms and relative p10-p90 spread over runs, in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(x)  # warm-up
    per_round = max(runs // rounds, 1)
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(per_round):
                start = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - start) * 1e3)
    out = {}
    for name, t in times.items():
        t.sort()
        med = statistics.median(t)
        p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10 - (1 if len(t) % 10 == 0 else 0)]
        out[name] = {"median_ms": med, "spread": (p90 - p10) / med, "runs": len(t)}
    return out


def _digits_variants() -> list[str]:
    """Token-reduction settings compared on the digits ViT (65 tokens, 4 blocks)."""
    out = [f"tome{{r={r}}}" for r in (2, 4, 6, 8, 10, 12, 13, 14, 16)]
    out += [f"tome{{r={r},schedule=decreasing}}" for r in (4, 6, 8, 9, 10, 12)]
    out += ["tome{r=8,prop_attn=false}", "tome{r=13,prop_attn=false}"]
    out += ["tome{schedule=list,rs=[16,12,8,0]}", "tome{schedule=list,rs=[20,16,8,0]}",
            "tome{schedule=list,rs=[24,12,4,0]}", "tome{schedule=list,rs=[28,12,4,0]}",
            "tome{schedule=list,rs=[32,16,0,0]}"]
    out += [f"prune-tokens{{keep={k}}}" for k in (0.7, 0.5)]
    out += ["prune-tokens{schedule=pyramid,keeps=[0.5,0.25,0.125]}"]
    return out


def digits_accuracy(task: DigitsTask, batch: int = 256) -> dict:
    """Val/test top-1 and FLOPs of every variant; picks the best setting on validation."""
    x = task.x_val[:batch]
    base = _compile(task.model, x, "", target="reference")
    base_val = task.accuracy(base, task.x_val, task.y_val, batch)
    base_test = task.accuracy(base, task.x_test, task.y_test, batch)
    base_flops = base.graph.flops()
    rows = [{"reduction": "none", "val": base_val, "test": base_test, "flops_ratio": 1.0}]
    for spec in _digits_variants():
        c = _compile(task.model, x, spec, target="reference")
        rows.append({"reduction": spec, "val": task.accuracy(c, task.x_val, task.y_val, batch),
                     "test": task.accuracy(c, task.x_test, task.y_test, batch),
                     "flops_ratio": c.graph.flops() / base_flops})
    ok = [r for r in rows[1:] if base_val - r["val"] <= MAX_DROP]
    chosen = min(ok, key=lambda r: r["flops_ratio"]) if ok else None
    n_val, n_test = len(task.y_val), len(task.y_test)
    print(f"\ndigits ViT {DEFAULT_OVERRIDES} (65 tokens), val {n_val} / test {n_test} images; "
          f"chosen on val: max FLOPs cut with val drop <= {MAX_DROP} pt")
    print(f"{'reduction':40s} {'val':>6s} {'Δval':>6s} {'test':>6s} {'Δtest':>6s} "
          f"{'FLOPs':>6s} {'cut':>5s}")
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        print(f"{r['reduction']:40s} {r['val']:6.2f} {r['val'] - base_val:6.2f} "
              f"{r['test']:6.2f} {r['test'] - base_test:6.2f} {r['flops_ratio']:6.3f} "
              f"{100 * (1 - r['flops_ratio']):4.0f}%{mark}")
    if chosen is not None:
        drop, cut = base_test - chosen["test"], 1 - chosen["flops_ratio"]
        met = drop <= MAX_DROP and cut >= 0.4
        print(f"chosen {chosen['reduction']}: test drop {drop:.2f} pt, FLOPs -{100 * cut:.0f}% "
              f"-> accuracy/FLOPs target {'MET' if met else 'MISSED'}")
    return {"rows": rows, "chosen": chosen and chosen["reduction"],
            "base_flops": base_flops, "n_val": n_val, "n_test": n_test}


def latency_table(name: str, model: torch.nn.Module, x: torch.Tensor, specs: list[str],
                  runs: int) -> list[dict]:
    """FLOPs and median latency of default vs default+spec on each target."""
    rows = []
    print(f"\n{name} batch {x.shape[0]}: latency (median of {runs}, 2 threads)")
    print(f"{'target':10s} {'reduction':36s} {'GFLOPs':>8s} {'FLOPs':>6s} {'ms':>9s} "
          f"{'spread':>7s} {'speedup':>7s}")
    for target in TARGETS:
        compiled = {s: _compile(model, x, s, target) for s in ["", *specs]}
        timed = _time_interleaved(compiled, x, runs)
        base_flops, base_ms = compiled[""].graph.flops(), timed[""]["median_ms"]
        for s, c in compiled.items():
            flops = c.graph.flops()
            row = {"model": name, "batch": x.shape[0], "target": target,
                   "reduction": s or "none", "gflops": flops / 1e9,
                   "flops_ratio": flops / base_flops, **timed[s],
                   "speedup": base_ms / timed[s]["median_ms"]}
            rows.append(row)
            print(f"{target:10s} {row['reduction']:36s} {row['gflops']:8.3f} "
                  f"{row['flops_ratio']:6.3f} {row['median_ms']:9.2f} "
                  f"{100 * row['spread']:6.0f}% {row['speedup']:7.2f}")
    return rows


def main() -> None:
    """Run the benchmark tables and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits accuracy table only")
    parser.add_argument("--latency-only", action="store_true",
                        help="reuse the digits accuracy table from the existing JSON")
    parser.add_argument("--runs", type=int, default=21, help="timed runs per configuration")
    parser.add_argument("--s16-rs", default="8,13,16", help="ToMe r values for ViT-S/16")
    parser.add_argument("--b16-rs", default="8,13,16", help="ToMe r values for ViT-B/16")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    task = train_digits_vit()
    if args.latency_only and RESULTS.exists():
        result: dict = {"digits": json.loads(RESULTS.read_text())["digits"]}
    else:
        result = {"digits": digits_accuracy(task)}
        _write(result)
    if not args.quick:
        chosen = result["digits"]["chosen"]
        specs = [s for s in ("tome{r=8}", chosen) if s]
        result["latency"] = latency_table("digits_vit", task.model, task.x_test[:256],
                                          list(dict.fromkeys(specs)), args.runs)
        _write(result)
        for name, batch, rs in (("vit_s16", 8, args.s16_rs), ("vit_b16", 2, args.b16_rs)):
            model, (x,) = get_model(name, batch_size=batch)
            specs = [f"tome{{r={r}}}" for r in rs.split(",")]
            result["latency"] += latency_table(name, model, x, specs, max(args.runs // 3, 5))
            _write(result)


def _write(result: dict) -> None:
    """Write the results so far to RESULTS (after every table, so partial runs keep data)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
