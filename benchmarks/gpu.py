"""GPU benchmarks of the ``cuda`` target: Triton templates against device peak, and end-to-end
latency of ViT-B/16, BERT-base and ResNet-50 (fp16, batch 1 and 32): eager vs
``torch.compile`` (default mode) vs ``accel.compile(target="cuda")``.

    python benchmarks/gpu.py                 # everything, JSON to benchmarks/results/
    python benchmarks/gpu.py --quick         # fewer iterations, batch 1 only
    python benchmarks/gpu.py --no-e2e        # templates only

Needs a CUDA device; without one it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
E2E_MODELS = ("vit_b16", "bert_base", "resnet50")

# Dense fp16 tensor-core TFLOP/s and memory bandwidth in TB/s, from vendor data sheets.
DEVICE_PEAKS: dict[str, tuple[float, float]] = {
    "H200": (989.0, 4.8),
    "H100 SXM": (989.0, 3.35),
    "H100 80GB HBM3": (989.0, 3.35),
    "H100 PCIe": (756.0, 2.0),
    "H100": (989.0, 3.35),
    "A100-SXM4-80GB": (312.0, 2.04),
    "A100-SXM4-40GB": (312.0, 1.555),
    "A100-PCIE": (312.0, 1.935),
    "A100": (312.0, 1.555),
    "L4": (121.0, 0.3),
    "A10": (125.0, 0.6),
    "RTX 4090": (165.0, 1.008),
    "RTX 3090": (71.0, 0.936),
    "T4": (65.0, 0.32),
}


def device_peaks(name: str) -> tuple[float, float] | None:
    """(TFLOP/s, TB/s) of the first table entry contained in the device ``name``."""
    for key, peaks in DEVICE_PEAKS.items():
        if key.lower() in name.lower():
            return peaks
    return None


@dataclass(frozen=True)
class TemplateCase:
    """One template microbenchmark: a graph a single fused kernel runs."""

    name: str
    kind: str
    build: Callable[[torch.device, torch.dtype, int], object]
    """(device, dtype, scale divisor) -> (graph, inputs)."""


def _graph(shapes: dict[str, tuple[int, ...]], build: Callable, device: torch.device,
           dtype: torch.dtype) -> tuple[object, tuple[torch.Tensor, ...]]:
    from accel.ir.graph import Rewriter
    from accel.ir.types import TensorType

    rw = Rewriter()
    xs = {k: rw.add_input(k, TensorType(s, dtype, device.type)) for k, s in shapes.items()}
    rw.set_outputs(build(rw, **xs))
    graph = rw.finish("bench")
    inputs = tuple(torch.randn(v.shape, device=device, dtype=dtype) for v in graph.inputs)
    return graph, inputs


def template_cases() -> list[TemplateCase]:
    """The template microbenchmarks; ``scale`` divides the big dims (tests use a large one)."""

    def pointwise(dev: torch.device, dt: torch.dtype, s: int) -> object:
        return _graph({"x": (8192 // s, 4096), "b": (4096,)},
                      lambda rw, x, b: [rw.op("gelu", rw.op("add", x, b))], dev, dt)

    def layer_norm(dev: torch.device, dt: torch.dtype, s: int) -> object:
        def build(rw, x):  # noqa: ANN001, ANN202
            w = rw.const(torch.ones(1024, device=dev, dtype=dt))
            b = rw.const(torch.zeros(1024, device=dev, dtype=dt))
            return [rw.op("layer_norm", x, w, b, normalized_shape=(1024,))]
        return _graph({"x": (32768 // s, 1024)}, build, dev, dt)

    def softmax(dev: torch.device, dt: torch.dtype, s: int) -> object:
        return _graph({"x": (16384 // s, 2048)},
                      lambda rw, x: [rw.op("softmax", x, dim=-1)], dev, dt)

    def linear(dev: torch.device, dt: torch.dtype, s: int) -> object:
        def build(rw, x):  # noqa: ANN001, ANN202
            w = rw.const(torch.randn(4096, 4096 // s, device=dev, dtype=dt) / 64)
            b = rw.const(torch.randn(4096, device=dev, dtype=dt))
            return [rw.op("gelu", rw.op("linear", x, w, b))]
        return _graph({"x": (4096 // s, 4096 // s)}, build, dev, dt)

    def attention(dev: torch.device, dt: torch.dtype, s: int) -> object:
        shape = (8, 16, 2048 // s, 64)
        return _graph({"q": shape, "k": shape, "v": shape},
                      lambda rw, q, k, v: [rw.op("attention", q, k, v, scale=None, causal=False)],
                      dev, dt)

    return [TemplateCase("pointwise add+gelu 8192x4096", "pointwise", pointwise),
            TemplateCase("layer_norm 32768x1024", "reduction", layer_norm),
            TemplateCase("softmax 16384x2048", "reduction", softmax),
            TemplateCase("linear+bias+gelu 4096^3", "matmul", linear),
            TemplateCase("attention B8 H16 L2048 D64", "attention", attention)]


def traffic(graph: object) -> tuple[int, int]:
    """(FLOPs, minimum bytes moved: inputs, constants and outputs once) of a graph."""
    values = [*graph.inputs, *graph.constants, *graph.outputs]
    return graph.flops(), sum(v.type.nbytes for v in values)


def time_cuda(fn: Callable[[], object], iters: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench_templates(iters: int) -> list[dict]:
    """Achieved TFLOP/s and TB/s of each template against the device peak."""
    from accel.targets import LowerContext, lower

    dev = torch.device("cuda")
    peaks = device_peaks(torch.cuda.get_device_name())
    rows = []
    for case in template_cases():
        graph, inputs = case.build(dev, torch.float16, 1)
        ctx = LowerContext()
        exe = lower(graph, "cuda", ctx)
        ms = time_cuda(lambda exe=exe, inputs=inputs: exe.run(inputs), iters)
        flops, nbytes = traffic(graph)
        row = {"case": case.name, "kind": case.kind, "ms": ms,
               "tflops": flops / ms / 1e9, "tbps": nbytes / ms / 1e9, "lowering": ctx.notes}
        if peaks is not None:
            row["pct_peak_flops"] = 100 * row["tflops"] / peaks[0]
            row["pct_peak_bandwidth"] = 100 * row["tbps"] / peaks[1]
        rows.append(row)
        print(f"{case.name:32s} {ms:8.3f} ms {row['tflops']:8.1f} TFLOP/s {row['tbps']:6.2f} TB/s")
    return rows


def _half_inputs(inputs: tuple) -> tuple:
    return tuple(t.cuda().half() if t.is_floating_point() else t.cuda() for t in inputs)


def bench_models(batches: tuple[int, ...], iters: int, models: tuple[str, ...]) -> list[dict]:
    """Latency (ms) of eager, torch.compile and accel target=cuda per model and batch."""
    import accel
    from accel.models import get_model

    rows = []
    for name in models:
        for batch in batches:
            model, inputs = get_model(name, batch_size=batch)
            model = model.cuda().half().eval()
            inputs = _half_inputs(inputs)
            row: dict = {"model": name, "batch": batch}
            with torch.no_grad():
                row["eager_ms"] = time_cuda(lambda m=model, x=inputs: m(*x), iters)
                try:
                    compiled_torch = torch.compile(model)
                    row["torch_compile_ms"] = time_cuda(lambda c=compiled_torch, x=inputs: c(*x),
                                                        iters)
                except Exception as e:  # noqa: BLE001 - reported, the other columns still count
                    row["torch_compile_error"] = repr(e)
                t0 = time.perf_counter()
                compiled = accel.compile(model, inputs, target="cuda")
                row["accel_compile_s"] = time.perf_counter() - t0
                row["accel_ms"] = time_cuda(lambda c=compiled, x=inputs: c(*x), iters)
                row["accel_lowering"] = compiled.report.lowering
            print(f"{name:10s} b={batch:<3d} eager {row['eager_ms']:8.3f} ms  torch.compile "
                  f"{row.get('torch_compile_ms', float('nan')):8.3f} ms  accel "
                  f"{row['accel_ms']:8.3f} ms")
            rows.append(row)
    return rows


def environment() -> dict:
    """Device and library versions for the results file."""
    import triton

    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 0 on success (and when there is no CUDA device)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, batch 1 only")
    parser.add_argument("--no-e2e", action="store_true", help="templates only")
    parser.add_argument("--models", default=",".join(E2E_MODELS))
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device available; nothing to measure.")
        return 0
    iters = 10 if args.quick else 50
    result = {"environment": environment(), "templates": bench_templates(iters)}
    if not args.no_e2e:
        batches = (1,) if args.quick else (1, 32)
        result["models"] = bench_models(batches, iters, tuple(args.models.split(",")))
    out = args.out or RESULTS_DIR / f"gpu_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
