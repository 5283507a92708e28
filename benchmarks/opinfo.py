"""The OpInfo table: every entry of PyTorch's op database (first float32 CPU sample) through
accel.compile (IR / fallback / error, and the result against eager), accel.export_onnx ->
onnxruntime, and the peer torch.onnx.export(dynamo=True) -> onnxruntime.

    python benchmarks/opinfo.py                  # all ops: results/opinfo.json, docs/opinfo.md
    python benchmarks/opinfo.py --ops add,cat    # a few ops, printed only
    python benchmarks/opinfo.py --no-peer        # accel's columns only (~1 minute)
    python benchmarks/opinfo.py --peer-from benchmarks/results/opinfo.json
                                                 # the peer column of an earlier run (same
                                                 # torch and onnxruntime), accel's rerun

The same sweep without the peer column runs in CI (tests/test_opinfo_sweep.py); see
accel/opinfo.py for what each outcome means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

from accel.opinfo import (
    ATOL,
    DEFAULT_TIMEOUT_S,
    RTOL,
    Capture,
    Check,
    OpResult,
    error_categories,
    load_ops,
    op_key,
    summarize,
    sweep,
    totals,
)

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Run the sweep, print the totals and write the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", help="comma-separated OpInfo keys, name[.variant] (default: all)")
    p.add_argument("--no-peer", action="store_true", help="skip torch.onnx.export")
    p.add_argument("--peer-from", type=Path, help="take the peer column from an earlier "
                   "results JSON (it does not depend on accel) instead of rerunning it")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per op and path, s")
    p.add_argument("--out", type=Path, help="JSON results (default: results/opinfo.json; "
                   "with --ops only if given)")
    p.add_argument("--doc", type=Path, help="markdown table (default: docs/opinfo.md; "
                   "with --ops only if given)")
    args = p.parse_args(argv)
    ops = load_ops()
    if args.ops:
        wanted = set(args.ops.split(","))
        ops = [o for o in ops if op_key(o) in wanted]
    peer = not (args.no_peer or args.peer_from)

    def progress(r: OpResult) -> None:
        cells = [r.capture.value + ("/WRONG" if r.compiled is Check.WRONG else ""),
                 f"onnx={r.onnx.value}"] + ([f"peer={r.peer.value}"] if peer else [])
        print(f"{r.op:44s} {' '.join(cells):40s} {r.seconds:5.2f}s", file=sys.stderr)

    start = time.perf_counter()
    results = sweep(ops, peer=peer, timeout=args.timeout, progress=progress)
    seconds = time.perf_counter() - start
    if args.peer_from:
        _reuse_peer(results, args.peer_from)
        peer = True
    print(summarize(results), file=sys.stderr)
    print(f"{seconds:.0f} s", file=sys.stderr)
    if args.ops and not (args.out or args.doc):
        return 0
    out = args.out or ROOT / "benchmarks" / "results" / "opinfo.json"
    doc = args.doc or ROOT / "docs" / "opinfo.md"
    data = {"env": environment(), "seconds": round(seconds, 1), "peer": peer,
            "totals": _totals_json(results), "categories": dict(error_categories(
                results).most_common()), "results": [r.to_json() for r in results]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    doc.write_text(markdown(results, data))
    print(f"wrote {out} and {doc}", file=sys.stderr)
    return 0


def _reuse_peer(results: list[OpResult], path: Path) -> None:
    """Fill the peer column of ``results`` from an earlier run's JSON, which must have been
    taken with the same torch and onnxruntime (the peer's outcome depends on nothing else)."""
    old = json.loads(path.read_text())
    env = environment()
    stale = [k for k in ("torch", "onnxruntime", "onnxscript") if old["env"].get(k) != env.get(k)]
    if not old.get("peer") or stale:
        raise SystemExit(f"{path}: no peer column, or taken with other versions of "
                         f"{', '.join(stale) or 'the peer'}: rerun without --peer-from")
    by_op = {r["op"]: r for r in old["results"]}
    for r in results:
        if r.op in by_op:
            r.peer, r.peer_error = Check(by_op[r.op]["peer"]), by_op[r.op]["peer_error"]


def environment() -> dict[str, str]:
    """Host line, date and versions."""
    import onnx
    import onnxruntime

    from accel.host import host

    env = {"host": host().describe(), "date": datetime.date.today().isoformat(),
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "onnx": onnx.__version__, "python": platform.python_version()}
    try:
        import onnxscript

        env["onnxscript"] = onnxscript.__version__
    except ImportError:
        pass
    return env


def _totals_json(results: list[OpResult]) -> dict:
    t = totals(results)
    return {"ops": t.ops, "attempted": t.attempted, "capture": dict(t.capture),
            "compiled": dict(t.compiled), "onnx": dict(t.onnx), "peer": dict(t.peer),
            "wrong": {r.op: r.wrong for r in results if r.wrong}}


def _cell(text: str, limit: int = 110) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _compile_cell(r: OpResult) -> str:
    if r.capture is Capture.SKIPPED:
        return f"skipped: {_cell(r.skip_reason, 80)}"
    if r.capture is Capture.ERROR:
        return f"**error**: {_cell(_short(r.error))}"
    text = "IR" if r.capture is Capture.IR else "fallback: " + ", ".join(
        f"`{o.removeprefix('aten.')}`" for o in r.fallback_ops)
    if r.compiled is Check.WRONG:
        text += f" — **wrong**: {_cell(r.mismatch, 90)}"
    elif r.compiled is Check.ERROR:
        text += f" — **run error**: {_cell(r.mismatch, 90)}"
    return text


def _short(detail: str) -> str:
    """A failure message without what every row would repeat."""
    if "is an 'aten' fallback" in detail:
        return "no ONNX lowering (aten fallback)"
    detail = re.sub(r"could not capture [^:]*: ", "", detail)
    return re.sub(r"\[ONNXRuntimeError\] : \d+ : (\w+) : Load model from \S+ failed:", r"\1: ",
                  detail)


def _check_cell(check: Check, detail: str, capture_failed: bool = False) -> str:
    if check is Check.EXACT:
        return "exact"
    if check is Check.NOT_RUN:
        return "-"
    if capture_failed and check is Check.ERROR:
        return "error (capture failed)"
    return f"**{check.value}**: {_cell(_short(detail), 90)}"


def markdown(results: list[OpResult], data: dict) -> str:
    """The docs page: totals, wrong results, failure kinds, then one row per op."""
    t = totals(results)
    n = max(t.attempted, 1)
    env = data["env"]

    def pct(c: int) -> str:
        return f"{c} ({100 * c / n:.0f}%)"

    peer = data["peer"]
    lines = [
        "# OpInfo sweep: accel on PyTorch's op database",
        "",
        f"Generated by `python benchmarks/opinfo.py` in {data['seconds']:.0f} s on "
        f"{env['host']} ({', '.join(f'{k} {v}' for k, v in env.items() if k != 'host')}).",
        "",
        "Every entry of `torch.testing._internal.common_methods_invocations.op_db` (name and "
        "variant) with its first float32 CPU sample (generated with seed 0), wrapped in a module "
        "whose inputs are the sample's tensors (other arguments are closed over), goes through:",
        "",
        "- **accel.compile** (`target=\"reference\"`): *IR* when every node lowered to IR ops, "
        "*fallback* when some run as aten fallback nodes (listed), *error* when compile "
        "raised; the compiled model's output is then compared with eager, and **wrong** marks "
        "a silent wrong result;",
        "- **accel ONNX**: `accel.export_onnx` (static shapes) run in onnxruntime;",
        "- **torch.onnx peer**: `torch.onnx.export(dynamo=True)` of the same module run in "
        "onnxruntime (complex outputs accepted as their real view).",
        "",
        f"Outputs match when `assert_close(rtol={RTOL:g}, atol={ATOL:g}, equal_nan=True)` holds "
        "with equal dtypes and output structure; ops that are random or uninitialized by "
        "nature (sampling, dropout, rrelu in training, `empty*`) are compared by structure, "
        "shape and dtype only. `tests/test_opinfo_sweep.py` runs accel's columns in CI: no "
        "silent wrong result outside its commented `KNOWN_WRONG` list, and coverage may only "
        "grow.",
        "",
        "## Totals",
        "",
        f"{t.ops} entries, {t.attempted} attempted, {t.capture['skipped']} skipped "
        "(reasons below). Percentages are of the attempted ones.",
        "",
        "| path | exact / IR | fallback | wrong | error |",
        "|---|---|---|---|---|",
        f"| accel.compile | IR {pct(t.capture['ir'])} | {pct(t.capture['fallback'])} | "
        f"{pct(t.compiled['wrong'])} | {pct(t.capture['error'] + t.compiled['error'])} |",
        f"| accel ONNX | {pct(t.onnx['exact'])} | | {pct(t.onnx['wrong'])} | "
        f"{pct(t.onnx['error'])} |",
    ]
    if peer:
        lines.append(f"| torch.onnx peer | {pct(t.peer['exact'])} | | {pct(t.peer['wrong'])} | "
                     f"{pct(t.peer['error'])} |")
    wrong = [r for r in results if r.wrong]
    lines += ["", "## Silent wrong results on accel's paths", ""]
    lines += [f"- `{r.op}` ({', '.join(r.wrong)}): {_cell(r.mismatch or r.onnx_error, 160)}"
              for r in wrong] or ["none"]
    lines += ["", "## Failures on accel's paths, by kind", "", "| count | kind |", "|---|---|"]
    lines += [f"| {c} | {_cell(k, 160)} |" for k, c in data["categories"].items()]
    skips: dict[str, int] = {}
    for r in results:
        if r.capture is Capture.SKIPPED:
            reason = r.skip_reason.split(":")[0]
            skips[reason] = skips.get(reason, 0) + 1
    lines += ["", "## Skipped", "", "| count | reason |", "|---|---|"]
    lines += [f"| {c} | {k} |" for k, c in sorted(skips.items(), key=lambda kv: -kv[1])]
    head = ["op", "accel.compile", "accel ONNX"] + (["torch.onnx peer"] if peer else [])
    lines += ["", "## Per op", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(results, key=lambda r: r.op):
        cells = [f"`{r.op}`", _compile_cell(r),
                 _check_cell(r.onnx, r.onnx_error, r.capture is Capture.ERROR)]
        if peer:
            cells.append(_check_cell(r.peer, r.peer_error))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
