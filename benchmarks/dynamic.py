"""Dynamic shapes, measured: compile stalls over a loop of sequence lengths, dynamic vs static
latency at each length, and BERT-base from one compile across lengths 16..512.

1. ``torch.compile(model, backend=...)`` on a 4-layer hidden-256 BERT (batch 4) called with
   10 sequence lengths (16..96), accel and TorchInductor in the same run: compiles, and the
   stall of each new length (first call minus second call).
2. At each length: accel's one dynamic compile against a static compile for that length
   (``accel.compile``, ``cpu`` target), paired: calls alternate, median of per-round ratios.
3. BERT-base (Hugging Face BertModel, default config, random weights, batch 1): accel
   compiled once at seq 128 with dynamic dims, run at 16..512, against onnxruntime on
   ``torch.onnx.export(dynamo=True)`` with dynamic axes, interleaved.

    python benchmarks/dynamic.py [--quick] [--skip-base]

Results go to benchmarks/results/dynamic.json (with the host's CPU and ISA).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

import accel
from accel.host import cpu_model, host
from accel.timing import interleaved_ms

RESULTS = Path(__file__).resolve().parent / "results" / "dynamic.json"
LENGTHS = [16, 24, 32, 40, 48, 56, 64, 72, 80, 96]
PAUSE_S = 0.1
"""Pause before each timed call: onnxruntime's worker threads spin for a while after a run
and would slow whichever session runs next on a 2-core machine."""


def small_bert() -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=1024)
    return _FirstOutput(BertModel(cfg).eval())


class _FirstOutput(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def tokens(batch: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seq)
    ids = torch.randint(100, 20000, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq * 3 // 4:] = 0
    return ids, mask


def stall_loop(model: torch.nn.Module, backend: str, lengths: list[int]) -> dict[str, Any]:
    """Each length: first-call and second-call milliseconds; compiles counted."""
    torch._dynamo.reset()
    start = len(accel.reports())
    from torch._dynamo.utils import counters

    counters.clear()
    fn = torch.compile(model, backend=backend)
    rows = []
    with torch.no_grad():
        for s in lengths:
            args = tokens(4, s)
            t0 = time.perf_counter()
            fn(*args)
            t1 = time.perf_counter()
            fn(*args)
            t2 = time.perf_counter()
            rows.append({"seq": s, "first_ms": (t1 - t0) * 1e3, "second_ms": (t2 - t1) * 1e3,
                         "stall_ms": (t1 - t0 - (t2 - t1)) * 1e3})
    out: dict[str, Any] = {"backend": backend, "lengths": rows,
                           "stall_after_two_s": sum(r["stall_ms"] for r in rows[2:]) / 1e3,
                           "graphs": int(counters["stats"].get("unique_graphs", 0))}
    if backend == "accel":
        reports = accel.reports()[start:]
        out["accel_graphs"] = len(reports)
        out["accel_recompilations"] = sum(r.recompilations for r in reports)
        out["eager_fallbacks"] = [f for r in reports for f in r.eager_fallbacks]
    return out


def dynamic_vs_static(model: torch.nn.Module, lengths: list[int], rounds: int) -> list[dict]:
    """Per length: the dynamic compile's latency over a static compile's, paired."""
    dyn = accel.compile(model, tokens(4, 32), target="cpu", dynamic_shapes="auto")
    rows = []
    with torch.no_grad():
        for s in lengths:
            args = tokens(4, s)
            static = accel.compile(model, args, target="cpu")
            dyn(*args)  # warm: a new length's first call (onnxruntime plans per shape)
            static(*args)
            times = interleaved_ms({"dynamic": lambda a=args: dyn(*a),
                                    "static": lambda a=args, st=static: st(*a)}, rounds, PAUSE_S)
            ratios = [d / st for d, st in zip(times["dynamic"], times["static"], strict=True)]
            rows.append({"seq": s, "dynamic_ms": statistics.median(times["dynamic"]),
                         "static_ms": statistics.median(times["static"]),
                         "ratio": statistics.median(ratios),
                         "static_executor": static.report.executor,
                         "dynamic_executor": dyn.report.executor})
            print(f"  seq {s}: dynamic/static {rows[-1]['ratio']:.3f} "
                  f"({rows[-1]['dynamic_ms']:.2f} vs {rows[-1]['static_ms']:.2f} ms)",
                  file=sys.stderr)
    rows.append({"recompilations": dyn.report.recompilations})
    return rows


def bert_base(lengths: list[int], rounds: int) -> dict[str, Any]:
    """accel compiled once at 128 vs onnxruntime on torch's dynamic export, per length."""
    import onnxruntime as ort
    from torch.export import Dim
    from transformers import BertConfig, BertModel

    from accel.host import physical_cores

    model = _FirstOutput(BertModel(BertConfig()).eval())
    example = tokens(1, 128)
    t0 = time.perf_counter()
    compiled = accel.compile(model, example, target="cpu", dynamic_shapes="auto")
    accel_compile_s = time.perf_counter() - t0
    spec = ({0: Dim.AUTO, 1: Dim.AUTO}, {0: Dim.AUTO, 1: Dim.AUTO})
    d = tempfile.mkdtemp(prefix="accel-dyn-")
    t0 = time.perf_counter()
    torch.onnx.export(model, example, f"{d}/bert.onnx", dynamo=True, dynamic_shapes=spec,
                      external_data=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = physical_cores()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(f"{d}/bert.onnx", so, providers=["CPUExecutionProvider"])
    ort_prepare_s = time.perf_counter() - t0
    names = [i.name for i in sess.get_inputs()]
    rows = []
    with torch.no_grad():
        for s in lengths:
            args = tokens(1, s)
            feeds = {n: a.numpy() for n, a in zip(names, args, strict=True)}
            ref = model(*args)
            err = float((compiled(*args) - ref).abs().max())
            sess.run(None, feeds)  # warm at this length
            times = interleaved_ms({"accel": lambda a=args: compiled(*a),
                                    "ort": lambda f=feeds: sess.run(None, f)}, rounds, PAUSE_S)
            rows.append({"seq": s, "accel_ms": statistics.median(times["accel"]),
                         "ort_ms": statistics.median(times["ort"]),
                         "accel_over_ort": statistics.median(
                             a / o for a, o in zip(times["accel"], times["ort"], strict=True)),
                         "max_abs_err": err})
            print(f"  BERT-base seq {s}: accel {rows[-1]['accel_ms']:.1f} ms, onnxruntime "
                  f"{rows[-1]['ort_ms']:.1f} ms", file=sys.stderr)
    return {"accel_compile_s": accel_compile_s, "ort_export_and_session_s": ort_prepare_s,
            "executor": compiled.report.executor,
            "recompilations": compiled.report.recompilations, "lengths": rows}


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer lengths and rounds")
    p.add_argument("--skip-base", action="store_true", help="skip the BERT-base sweep")
    p.add_argument("--parts", default="1,2,3", help="which measurements (1, 2, 3)")
    p.add_argument("--rounds", type=int, help="paired rounds per length (default 15)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    lengths = LENGTHS[:4] if args.quick else LENGTHS
    rounds = args.rounds or (3 if args.quick else 15)
    parts = {int(x) for x in args.parts.split(",")}
    model = small_bert()
    result: dict[str, Any] = {
        "environment": {"cpu": cpu_model(), "host": host().describe(),
                        "isa": sorted(host().isa), "torch": torch.__version__,
                        "threads": torch.get_num_threads(),
                        "date": time.strftime("%Y-%m-%d")}}
    if args.out.exists():  # parts not re-run keep their earlier results
        result = {**json.loads(args.out.read_text()), **result}
    if 1 in parts:
        print("1. torch.compile over sequence lengths", file=sys.stderr)
        result["loop"] = [stall_loop(model, b, lengths) for b in ("accel", "inductor")]
        for r in result["loop"]:
            print(f"  {r['backend']}: graphs {r['graphs']}, stall after the first two lengths "
                  f"{r['stall_after_two_s']:.2f} s", file=sys.stderr)
    if 2 in parts:
        print("2. dynamic vs static compile, paired", file=sys.stderr)
        result["dynamic_vs_static"] = dynamic_vs_static(model, lengths, rounds)
    if 3 in parts and not args.skip_base:
        print("3. BERT-base, one compile at 128", file=sys.stderr)
        base = [16, 32, 64, 128, 256, 384, 512] if not args.quick else [16, 128]
        result["bert_base"] = bert_base(base, 5 if not args.quick else 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
