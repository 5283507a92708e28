"""Token reduction benchmark: accuracy vs r on the digits ViT (three seeds, each with its own
split and model; settings chosen on the validation splits, reported on the test splits),
FLOPs and CPU latency vs r on the digits ViT, ViT-S/16 (batch 8) and ViT-B/16 (batch 2),
compiled with `default` vs `default,tome{...}` / `default,token-transform{...}`, on the `cpu`
and `reference` targets. Token Transforming is compared with ToMe at matched FLOPs (−30%, −40%,
−50%): at each level, each method's setting with the least validation drop among its settings
cutting that much (within a point below to five above) is reported on test.
Writes benchmarks/results/tome.json.

    python benchmarks/tome.py                 # everything (several minutes on 2 cores)
    python benchmarks/tome.py --quick         # digits accuracy table only
    python benchmarks/tome.py --runs 21       # timed runs per configuration (median)
    python benchmarks/tome.py --latency-only  # keep the accuracy table, redo latency (the
                                              # previous latency table moves to latency_history)

Latency: torch.set_num_threads(2); every round calls the baseline and each token-reduced model
once, back to back, so drift of this shared machine hits them alike. `speedup` is the median
over rounds of baseline / reduced (paired); `median_ms` and `spread` ((p90 - p10) / median) are
per model; `speedup_of_medians` is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import accel
from accel.bench.digits import DEFAULT_OVERRIDES, DigitsTask, train_digits_vit
from accel.models import get_model
from accel.timing import interleaved_ms

RESULTS = Path(__file__).resolve().parent / "results" / "tome.json"
MAX_DROP = 0.5
"""Largest accepted top-1 drop in points (validation, then reported on test)."""
MIN_CUT = 0.4
"""FLOPs cut the accuracy target is stated at."""
TARGETS = ("cpu", "reference")
LEVELS = (0.3, 0.4, 0.5)
"""FLOPs cuts Token Transforming and ToMe are compared at."""
LEVEL_WINDOW = (-0.01, 0.05)
"""A setting is at a level L when its FLOPs cut lies in [L - 0.01, L + 0.05)."""
TRANSFORM_CUT = 0.5
"""FLOPs cut the Token Transforming accuracy target (<= MAX_DROP) is stated at."""


def _compile(model: torch.nn.Module, x: torch.Tensor, reduction: str, target: str = "cpu"):  # noqa: ANN202
    """accel.compile with the default pipeline plus an optional token-reduction pass."""
    pipeline = "default" + (f",{reduction}" if reduction else "")
    return accel.compile(model, (x,), pipeline=pipeline, target=target)


def _time_interleaved(fns: dict[str, Callable], x: torch.Tensor, runs: int
                      ) -> dict[str, dict]:
    """Per name: median ms, relative p10-p90 spread and the per-round times of ``runs`` rounds,
    each round calling every function once (so drift of the machine hits all of them alike)."""
    for fn in fns.values():
        fn(x)  # warm-up
    times = interleaved_ms({name: (lambda fn=fn: fn(x)) for name, fn in fns.items()}, runs)
    out = {}
    for name, per_round in times.items():
        t = sorted(per_round)
        med = statistics.median(t)
        p10, p90 = t[len(t) // 10], t[(len(t) * 9) // 10 - (1 if len(t) % 10 == 0 else 0)]
        out[name] = {"median_ms": med, "spread": (p90 - p10) / med, "runs": len(t),
                     "per_round_ms": per_round}
    return out


def _paired_speedup(base: list[float], other: list[float]) -> float:
    """Median over rounds of base / other, each pair timed back to back."""
    return statistics.median(b / o for b, o in zip(base, other, strict=True))


def _digits_variants() -> list[str]:
    """Token-reduction settings compared on the digits ViT (65 tokens, 4 blocks)."""
    out = []
    for metric in ("keys", "tokens"):
        opt = "" if metric == "keys" else ",metric=tokens"
        out += [f"tome{{r={r}{opt}}}" for r in (4, 8, 9, 10, 12, 13, 14, 15, 16)]
        out += [f"tome{{r={r},schedule=decreasing{opt}}}" for r in (6, 8)]
        out += [f"tome{{r=13,prop_attn=false{opt}}}"]
        out += [f"tome{{schedule=list,rs=[16,12,8,0]{opt}}}"]
    out += [f"prune-tokens{{keep={k}}}" for k in (0.7, 0.5)]
    return out + _transform_variants()


def _transform_variants() -> list[str]:
    """Token Transforming settings: the pass defaults (class-attention targets) and ToMe's
    bipartite targets with several spreads (k, tau), on the keys and on the tokens, at the r
    of the three FLOPs levels (−30%, −40%, −50% on this model)."""
    out = []
    for r in (9, 12, 16):
        for metric in ("keys", "tokens"):
            opt = "" if metric == "keys" else ",metric=tokens"
            out.append(f"token-transform{{r={r}{opt}}}")
            out += [f"token-transform{{r={r},select=bipartite,k={k},tau={tau}{opt}}}"
                    for k, tau in ((2, 0.1), (3, 0.1), (4, 0.1), (4, 0.2), (4, 0.5), (8, 0.2))]
    return out


def _method(row: dict) -> str:
    """The pass a row's setting runs (tome, token-transform, prune-tokens; none)."""
    return row["reduction"].split("{")[0]


def matched_flops(rows: list[dict]) -> list[dict]:
    """Per FLOPs level, each method's setting with the least validation drop among its settings
    at that level (ties: the larger cut), with its test drop."""
    out = []
    lo, hi = LEVEL_WINDOW
    for level in LEVELS:
        entry: dict = {"level": level}
        for method in ("tome", "token-transform"):
            ok = [r for r in rows[1:] if _method(r) == method
                  and level + lo <= 1 - r["flops_ratio"] < level + hi]
            best = min(ok, key=lambda r: (r["val_drop"], r["flops_ratio"])) if ok else None
            entry[method] = best and {k: best[k] for k in ("reduction", "flops_ratio",
                                                           "val_drop", "test_drop")}
        tt, tm = entry["token-transform"], entry["tome"]
        entry["transform_less_test_drop"] = bool(tt and tm and tt["test_drop"] < tm["test_drop"])
        out.append(entry)
    return out


def _choose_within_drop(rows: list[dict], allowed: Callable[[dict], bool]) -> dict | None:
    """Largest FLOPs cut among allowed rows whose mean validation drop is within MAX_DROP."""
    ok = [r for r in rows[1:] if allowed(r) and r["val_drop"] <= MAX_DROP]
    return min(ok, key=lambda r: (r["flops_ratio"], r["val_drop"])) if ok else None


def _choose_within_flops(rows: list[dict], allowed: Callable[[dict], bool]) -> dict | None:
    """Smallest mean validation drop among allowed rows cutting at least MIN_CUT of the FLOPs
    (None when even that drop exceeds MAX_DROP)."""
    ok = [r for r in rows[1:] if allowed(r) and 1 - r["flops_ratio"] >= MIN_CUT
          and r["val_drop"] <= MAX_DROP]
    return min(ok, key=lambda r: (r["val_drop"], r["flops_ratio"])) if ok else None


def digits_accuracy(tasks: list[DigitsTask], batch: int = 256) -> dict:
    """Val/test top-1 and FLOPs of every variant on each seed's model; picks on validation.

    Each seed has its own stratified split and its own trained model. Settings are picked by
    the mean validation drop over the seeds, never by test accuracy: `at_flops` has the least
    validation drop among settings with >= MIN_CUT fewer FLOPs (the target's operating point),
    `within_drop` the largest FLOPs cut within MAX_DROP; their test drops are then reported per
    seed and pooled over all seeds' test images.
    """
    specs = ["", *_digits_variants()]
    acc: dict[str, dict[str, list[float]]] = {s: {"val": [], "test": []} for s in specs}
    flops: dict[str, float] = {}
    for i, task in enumerate(tasks):
        x = task.x_val[:batch]
        for s in specs:
            c = _compile(task.model, x, s, target="reference")
            acc[s]["val"].append(task.accuracy(c, task.x_val, task.y_val, batch))
            acc[s]["test"].append(task.accuracy(c, task.x_test, task.y_test, batch))
            flops.setdefault(s, c.graph.flops())
        print(f"seed {i}: evaluated {len(specs)} settings", flush=True)
    n_val = [len(t.y_val) for t in tasks]
    n_test = [len(t.y_test) for t in tasks]

    def pooled(per_seed: list[float], sizes: list[int]) -> float:
        return sum(a * n for a, n in zip(per_seed, sizes, strict=True)) / sum(sizes)

    base = acc[""]
    rows = []
    for s in specs:
        val_drop = [b - a for a, b in zip(acc[s]["val"], base["val"], strict=True)]
        test_drop = [b - a for a, b in zip(acc[s]["test"], base["test"], strict=True)]
        rows.append({"reduction": s or "none", "flops_ratio": flops[s] / flops[""],
                     "val": acc[s]["val"], "test": acc[s]["test"],
                     "val_drop": statistics.mean(val_drop),
                     "test_drop": pooled(base["test"], n_test) - pooled(acc[s]["test"], n_test),
                     "test_drop_per_seed": test_drop})
    every = (lambda r: _method(r) != "token-transform")  # the ToMe / EViT picks, as before
    keys_only = (lambda r: every(r) and "metric=tokens" not in r["reduction"])
    transform = (lambda r: _method(r) == "token-transform")
    transform_50 = (lambda r: transform(r) and 1 - r["flops_ratio"] >= TRANSFORM_CUT)
    picks = {
        "at_flops": _choose_within_flops(rows, every),
        "at_flops_keys": _choose_within_flops(rows, keys_only),
        "within_drop": _choose_within_drop(rows, every),
        "within_drop_keys": _choose_within_drop(rows, keys_only),
        "transform_at_flops": _choose_within_flops(rows, transform),
        "transform_at_50": _choose_within_flops(rows, transform_50),
        "transform_within_drop": _choose_within_drop(rows, transform),
    }
    print(f"\ndigits ViT {DEFAULT_OVERRIDES} (65 tokens), {len(tasks)} seeds (own split + model "
          f"each), val {sum(n_val)} / test {sum(n_test)} images in all. Δ = reduced - baseline "
          f"top-1 in points (val: mean over seeds; test: pooled over seeds)")
    print(f"{'reduction':50s} {'cut':>5s} {'Δval':>6s} {'Δtest':>6s}  Δtest per seed")
    for r in rows:
        seeds = " ".join(f"{0.0 - d:+5.2f}" for d in r["test_drop_per_seed"])
        marks = ", ".join(k for k, v in picks.items() if v is r)
        cut = 100 * (1 - r["flops_ratio"])
        print(f"{r['reduction']:50s} {cut:4.0f}% {0.0 - r['val_drop']:+6.2f} "
              f"{0.0 - r['test_drop']:+6.2f}  {seeds}{'  <- ' + marks if marks else ''}")
    print(f"at_flops: least val drop with >= {100 * MIN_CUT:.0f}% fewer FLOPs; within_drop: "
          f"most FLOPs cut with val drop <= {MAX_DROP} pt (_keys: metric=keys settings only)")
    for label, row in picks.items():
        if row is not None:
            cut = 1 - row["flops_ratio"]
            met = row["test_drop"] <= MAX_DROP and cut >= MIN_CUT
            print(f"{label:17s} {row['reduction']:44s} test drop {row['test_drop']:+.2f} pt, "
                  f"FLOPs -{100 * cut:.0f}% -> target {'MET' if met else 'MISSED'}")
    matched = matched_flops(rows)
    print("\nToken Transforming vs ToMe at matched FLOPs (each chosen on val, reported on test)")
    print(f"{'level':>5s}  {'method':15s} {'setting':52s} {'cut':>5s} {'Δval':>6s} {'Δtest':>6s}")
    for m in matched:
        for method in ("tome", "token-transform"):
            r = m[method]
            if r is not None:
                print(f"{100 * m['level']:4.0f}%  {method:15s} {r['reduction']:52s} "
                      f"{100 * (1 - r['flops_ratio']):4.0f}% {0.0 - r['val_drop']:+6.2f} "
                      f"{0.0 - r['test_drop']:+6.2f}")
        print(f"{'':7s}token-transform drops less on test: {m['transform_less_test_drop']}")
    t50 = picks["transform_at_50"]
    if t50 is not None:
        met = t50["test_drop"] <= MAX_DROP
        print(f"token-transform at >= {100 * TRANSFORM_CUT:.0f}% fewer FLOPs: {t50['reduction']} "
              f"test drop {t50['test_drop']:+.2f} pt -> target {'MET' if met else 'MISSED'}")
    chosen = picks["at_flops"]
    return {"rows": rows, "chosen": chosen and chosen["reduction"], "matched": matched,
            "picks": {k: v and v["reduction"] for k, v in picks.items()},
            "seeds": len(tasks), "base_flops": flops[""], "n_val": n_val, "n_test": n_test,
            "base_val": base["val"], "base_test": base["test"]}


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
        base_rounds = timed[""].pop("per_round_ms")
        for s, c in compiled.items():
            flops = c.graph.flops()
            rounds = timed[s].pop("per_round_ms", base_rounds)
            row = {"model": name, "batch": x.shape[0], "target": target,
                   "reduction": s or "none", "gflops": flops / 1e9,
                   "flops_ratio": flops / base_flops, **timed[s],
                   "speedup": _paired_speedup(base_rounds, rounds),
                   "speedup_of_medians": base_ms / timed[s]["median_ms"],
                   "executor": c.report.executor}
            rows.append(row)
            print(f"{target:10s} {row['reduction']:36s} {row['gflops']:8.3f} "
                  f"{row['flops_ratio']:6.3f} {row['median_ms']:9.2f} "
                  f"{100 * row['spread']:6.0f}% {row['speedup']:7.2f}")
    return rows


def main() -> None:
    """Run the benchmark tables and write the JSON."""
    from accel.host import header, host

    print(header(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits accuracy table only")
    parser.add_argument("--latency-only", action="store_true",
                        help="reuse the digits accuracy table from the existing JSON")
    parser.add_argument("--runs", type=int, default=21, help="timed runs per configuration")
    parser.add_argument("--seeds", type=int, default=3,
                        help="digits models (each with its own split) to average over")
    parser.add_argument("--s16", default="", help="';'-separated settings timed on ViT-S/16 "
                        "(default: tome{r=16} and both methods' -50%% picks on the digits ViT)")
    parser.add_argument("--b16", default="", help="';'-separated settings timed on ViT-B/16 "
                        "(default: as --s16)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    if args.latency_only and RESULTS.exists():
        task = train_digits_vit(seed=0)  # latency only needs one model
        old = json.loads(RESULTS.read_text())
        previous = [{"note": f"run before {time.strftime('%Y-%m-%d %H:%M')}",
                     "rows": old["latency"]}] if "latency" in old else []
        history = old.get("latency_history", []) + previous
        result: dict = {"digits": old["digits"], "latency_history": history}
    else:
        tasks = [train_digits_vit(seed=seed) for seed in range(args.seeds)]
        task = tasks[0]
        result = {"host": host().describe(), "digits": digits_accuracy(tasks),
                  "latency_history": _previous_latency()}
        _write(result)
    if not args.quick:
        digits = result["digits"]
        at_50 = next((m for m in digits.get("matched", []) if m["level"] == 0.5), {})
        picks_50 = [(at_50.get(k) or {}).get("reduction") for k in ("tome", "token-transform")]
        specs = [s for s in ("tome{r=8}", digits["chosen"], picks_50[1]) if s]
        result["latency"] = latency_table("digits_vit", task.model, task.x_test[:256],
                                          list(dict.fromkeys(specs)), args.runs)
        _write(result)
        big = ";".join(dict.fromkeys(s for s in ("tome{r=16}", *picks_50) if s))
        for name, batch, settings in (("vit_s16", 8, args.s16 or big),
                                      ("vit_b16", 2, args.b16 or big)):
            model, (x,) = get_model(name, batch_size=batch)
            specs = settings.split(";")
            result["latency"] += latency_table(name, model, x, specs, max(args.runs // 2, 6))
            _write(result)


def _previous_latency() -> list[dict]:
    """The existing JSON's latency tables (history and last run), kept across a full run."""
    if not RESULTS.exists():
        return []
    old = json.loads(RESULTS.read_text())
    last = [{"note": f"run before {time.strftime('%Y-%m-%d %H:%M')}", "rows": old["latency"]}
            ] if "latency" in old else []
    return old.get("latency_history", []) + last


def _write(result: dict) -> None:
    """Write the results so far to RESULTS (after every table, so partial runs keep data)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
