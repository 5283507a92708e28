"""Reparameterization: what the lossless passes buy on RepVGG-A0 and a RePaViT-style ViT.

Prints two tables: repvgg_a0 (training-time multi-branch form) convolution count and CPU
latency (median of repeated runs) for eager PyTorch, accel with no passes and accel
``default``; and the FLOPs of a ViT with ``ffn_idle_ratio=0.75`` before and after the
``repavit`` pass. CPU latency on a shared machine is noisy: compare medians, rerun quiet.

    python benchmarks/reparam.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

import accel
from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext, parse_pipeline, run_pipeline
from accel.timing import median_ms


def count_convs(model: torch.nn.Module) -> int:
    """Conv2d modules in an eager model."""
    return sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def repvgg_table(repeats: int) -> list[str]:
    """Rows for repvgg_a0: eager vs accel none vs accel default."""
    model, inputs = get_model("repvgg_a0")
    rows = [f"{'repvgg_a0 (1x3x224x224)':<28} {'convs':>6} {'median ms':>10} {'max |err|':>10}"]
    with torch.no_grad():
        ref = model(*inputs)
    eager_ms = median_ms(lambda: model(*inputs), repeats)
    rows.append(f"{'eager':<28} {count_convs(model):>6} {eager_ms:>10.2f} {0.0:>10.2g}")
    for pipeline in ("none", "default"):
        compiled = accel.compile(model, inputs, pipeline=pipeline)
        with torch.no_grad():
            err = (compiled(*inputs) - ref).abs().max().item()
        convs = compiled.graph.op_counts().get("conv", 0)
        ms = median_ms(lambda c=compiled: c(*inputs), repeats)
        label = f"accel {pipeline} ({compiled.report.target})"
        rows.append(f"{label:<28} {convs:>6} {ms:>10.2f} {err:>10.2g}")
    return rows


def repavit_table() -> list[str]:
    """Rows for a RePaViT-style ViT: FLOPs before/after the repavit pass."""
    model, inputs = get_model("vit_s16", batch_size=1, ffn_idle_ratio=0.75)
    graph = capture(model, inputs)
    ctx = PassContext(example_inputs=inputs)
    before, _ = run_pipeline(graph, parse_pipeline("fold-scale"), ctx)
    after, records = run_pipeline(before, parse_pipeline("repavit"), ctx)
    mlp = sum(n.flops() for n in before.find("linear"))
    mlp_after = sum(n.flops() for n in after.find("linear"))
    return [
        f"{'vit_s16 idle=0.75 (batch 1)':<28} {'GFLOPs':>8} {'linear GFLOPs':>14}",
        f"{'before repavit':<28} {before.flops() / 1e9:>8.3f} {mlp / 1e9:>14.3f}",
        f"{'after repavit':<28} {after.flops() / 1e9:>8.3f} {mlp_after / 1e9:>14.3f}",
        f"ratio {after.flops() / before.flops():.3f}; " + "; ".join(records[0].notes),
    ]


def main() -> None:
    """Print the tables."""
    from accel.host import header

    print(header(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (0: torch's default; 1 avoids oversubscription "
                             "on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("\n".join(repvgg_table(args.repeats)))
    print()
    print("\n".join(repavit_table()))


if __name__ == "__main__":
    main()
