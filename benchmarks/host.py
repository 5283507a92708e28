"""Host-aware CPU lowering, measured: lossy pipelines never slower than `default`, compile
time by stage, the persistent compile cache, and peak memory.

    python benchmarks/host.py [--models minilm,bert_base,gpt2] [--rounds 7] [--isa avx2,fma]

Per model, in one process, each pipeline compiled for the ``cpu`` target (which measures
onnxruntime, OpenVINO and, for int8 graphs, their fp32-dequantized forms) and the compiled
models timed interleaved (median of per-round latencies):

  default                               lossless
  fast                                  the lossy preset
  default,quantize{mode=int8-dynamic}   per-token dynamic int8

with the executor each chose, output fidelity against eager (cosine, and for MiniLM the
mean-pooled sentence embedding's cosine), and compile time by stage. Then, in fresh
subprocesses: compile time of a first and a second process (compile cache), and peak RSS
(sampled from the model's load on; the model itself counts for both) of accel `default`
against onnxruntime alone on torch's export. ``--isa`` forces the host
profile (``ACCEL_HOST_ISA``) to check another host's decisions on this one. Results go to
benchmarks/results/host-<isa>.json with the host line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from accel.timing import interleaved_ms

RESULTS = Path(__file__).resolve().parent / "results"
PIPELINES = ["default", "fast", "default,quantize{mode=int8-dynamic}"]


def workload(name: str) -> tuple[torch.nn.Module, tuple]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if name == "minilm":
        from cpu_onnx import minilm
        return minilm(batch=8, seq=128)
    if name == "gpt2":  # GPT-2 small LM (124M, random init), prefill of 128 tokens
        from accel.bench.suite import get_case
        w = get_case("hf_gpt2").build()
        return w.model, w.inputs
    from accel.models import get_model
    return get_model(name, batch_size=1)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(),
                                                       b.flatten().double(), dim=0))


def compare(name: str, rounds: int) -> dict[str, Any]:
    import accel
    model, inputs = workload(name)
    with torch.no_grad():
        ref = model(*inputs)
    rows: dict[str, Any] = {}
    compiled = {}
    for pipe in PIPELINES:
        t0 = time.perf_counter()
        cm = accel.compile(model, inputs, pipeline=pipe, target="cpu")
        wall = time.perf_counter() - t0
        with torch.no_grad():
            out = cm(*inputs)
        row = {"executor": cm.report.executor, "compile_s": wall,
               "stages": cm.report.stages, "cos": _cos(out, ref),
               "lowering": [n for n in cm.report.lowering if "executor" in n or "int8" in n]}
        if name == "minilm":  # mean-pooled sentence embeddings, as sentence-transformers
            mask = inputs[1].unsqueeze(-1).float()
            pooled = [(h * mask).sum(1) / mask.sum(1) for h in (out, ref)]
            row["embedding_cos_min"] = float(torch.nn.functional.cosine_similarity(
                *pooled, dim=-1).min())
        rows[pipe] = row
        compiled[pipe] = cm
        print(f"  {name} {pipe}: compiled in {wall:.1f} s, executor {row['executor']}, "
              f"cos {row['cos']:.5f}", file=sys.stderr)
    fns = {p: (lambda c=c: c(*inputs)) for p, c in compiled.items()}
    fns["eager"] = lambda: model(*inputs)
    times = paired_rounds(fns, rounds)
    for pipe in PIPELINES:
        rows[pipe]["ms"] = statistics.median(times[pipe])
        rows[pipe]["over_default"] = statistics.median(
            a / b for a, b in zip(times[pipe], times["default"], strict=True))
        print(f"  {name} {pipe}: {rows[pipe]['ms']:.1f} ms, "
              f"{rows[pipe]['over_default']:.2f}x default's time", file=sys.stderr)
    return {"eager_ms": statistics.median(times["eager"]), "pipelines": rows}


def paired_rounds(fns: dict[str, Any], rounds: int, calls: int = 3) -> dict[str, list[float]]:
    """Per name, one figure (ms) per round: the fastest of ``calls`` calls after a pause and
    one untimed call, the order alternating between rounds (a 5-7% bias on this 2-core VM
    otherwise: see :func:`accel.timing.interleaved_ms`)."""
    return interleaved_ms(fns, rounds, pause_s=0.2, best_of=calls, alternate=True)


_CHILD = textwrap.dedent("""
    import gc, json, os, sys, threading, time, warnings
    warnings.filterwarnings("ignore")
    sys.path.insert(0, {bench!r})
    from host import workload
    import torch
    name, what = sys.argv[1], sys.argv[2]
    model, inputs = workload(name)
    gc.collect()
    page = os.sysconf("SC_PAGE_SIZE") / 2**20
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    base, high, done = rss(), [rss()], threading.Event()
    def sample():  # the high-water mark from here on (ru_maxrss also counts model building)
        while not done.is_set():
            high[0] = max(high[0], rss())
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    if what.startswith("accel"):
        import accel
        options = {{"prefer": "memory"}} if what == "accel-memory" else None
        cm = accel.compile(model, inputs, pipeline="default", target="cpu", options=options)
        run = lambda: cm(*inputs)
        stages = cm.report.stages
        executor = cm.report.executor
    else:
        import tempfile, onnxruntime as ort
        from accel.host import physical_cores
        from cpu_onnx import torch_onnx_export
        d = tempfile.mkdtemp()
        path = d + "/m.onnx"
        torch_onnx_export(model, inputs, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = physical_cores()
        if what == "ort":
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            feeds = {{i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}}
            run = lambda: sess.run(None, feeds)
        else:  # OpenVINO alone, on the same export, as accel's OpenVINO executor sets it up
            import openvino as ov
            from accel.backends.openvino import cpu_config
            compiled = ov.Core().compile_model(path, "CPU", cpu_config())
            req = compiled.create_infer_request()
            feeds = [t.numpy() for t in inputs]
            run = lambda: req.infer(feeds)
        stages, executor = {{}}, what
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        for _ in range(3):
            run()
    done.set()
    gc.collect()
    print(json.dumps({{"seconds": seconds, "peak_mb": max(high[0], rss()), "model_mb": base,
                      "after_mb": rss(), "stages": stages,
                      "executor": executor}}))
""")


def child(name: str, what: str, env: dict[str, str]) -> dict[str, Any]:
    code = _CHILD.format(bench=str(Path(__file__).resolve().parent))
    out = subprocess.run([sys.executable, "-c", code, name, what], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def processes(name: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "ACCEL_CACHE_DIR": d, "ACCEL_COMPILE_CACHE": "1"}
        first = child(name, "accel", env)
        second = child(name, "accel", env)
    low = child(name, "accel-memory", {**os.environ})
    ort_alone = child(name, "ort", {**os.environ})
    ov_alone = child(name, "openvino", {**os.environ})
    out = {"first_compile_s": first["seconds"], "first_stages": first["stages"],
           "second_compile_s": second["seconds"],
           "second_over_first": second["seconds"] / first["seconds"],
           "peak_mb_accel_default": first["peak_mb"], "peak_mb_ort_alone": ort_alone["peak_mb"],
           "rss_mb_model_loaded": first["model_mb"],
           "rss_mb_after_accel": first["after_mb"], "rss_mb_after_ort": ort_alone["after_mb"],
           "peak_mb_ort_model_loaded": ort_alone["model_mb"],
           "peak_accel_over_ort": first["peak_mb"] / ort_alone["peak_mb"],
           "ort_export_and_session_s": ort_alone["seconds"],
           "executor_accel_default": first["executor"],
           "peak_mb_openvino_alone": ov_alone["peak_mb"],
           "peak_accel_over_openvino": first["peak_mb"] / ov_alone["peak_mb"]}
    out["peak_mb_accel_prefer_memory"] = low["peak_mb"]
    out["executor_accel_prefer_memory"] = low["executor"]
    out["peak_accel_prefer_memory_over_ort"] = low["peak_mb"] / ort_alone["peak_mb"]
    # the fair reference is the runtime accel chose: its own weights layout is the floor
    alone = ov_alone if first["executor"] == "openvino" else ort_alone
    out["peak_accel_over_same_runtime_alone"] = first["peak_mb"] / alone["peak_mb"]
    print(f"  {name}: compile {first['seconds']:.1f} s, second process "
          f"{second['seconds']:.2f} s ({out['second_over_first']:.0%}); peak RSS accel "
          f"{first['peak_mb']:.0f} MB vs onnxruntime alone {ort_alone['peak_mb']:.0f} MB "
          f"({out['peak_accel_over_ort']:.2f}x), OpenVINO alone {ov_alone['peak_mb']:.0f} MB; "
          f"accel ran {first['executor']}: {out['peak_accel_over_same_runtime_alone']:.2f}x "
          f"that runtime alone; prefer=memory ({low['executor']}) {low['peak_mb']:.0f} MB "
          f"({out['peak_accel_prefer_memory_over_ort']:.2f}x onnxruntime alone)",
          file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="minilm,bert_base")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--isa", help="force the host profile (ACCEL_HOST_ISA), e.g. avx2,fma")
    p.add_argument("--skip-processes", action="store_true",
                   help="only the in-process comparison (an earlier run's subprocess rows kept)")
    p.add_argument("--only-processes", action="store_true",
                   help="only the compile-cache and memory subprocesses (other rows kept)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.isa:
        os.environ["ACCEL_HOST_ISA"] = args.isa
    os.environ.setdefault("ACCEL_COMPILE_CACHE", "0")  # in-process compiles: no cache
    from accel.host import host
    prof = host()
    print(f"host: {prof.describe()}", file=sys.stderr)
    result: dict[str, Any] = {"environment": {
        "host": prof.describe(), "isa": sorted(prof.isa), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d")}, "models": {}}
    tag = "-".join(sorted(prof.isa & {"avx2", "avx512f", "avx512_vnni", "amx_tile"})) or "x86"
    out = RESULTS / f"host-{tag}{'-forced' if prof.forced else ''}.json"
    earlier = json.loads(out.read_text())["models"] if out.exists() else {}
    if args.only_processes:
        result["models"] = earlier
    for name in args.models.split(","):
        print(f"{name}:", file=sys.stderr)
        row = result["models"].get(name, {})
        if not args.only_processes:
            row = compare(name, args.rounds)
        if not args.skip_processes:
            row["processes"] = processes(name)
        elif "processes" in earlier.get(name, {}):  # kept from the earlier run
            row["processes"] = earlier[name]["processes"]
        result["models"][name] = row
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
