"""The ``cuda`` target: fused Triton kernels on CUDA GPUs, ATen for the rest."""

from __future__ import annotations

from accel.ir.graph import Graph
from accel.runtime.executor import AtenExecutor
from accel.targets import Executable, LowerContext, register_target


@register_target("cuda", "CUDA: Triton kernels for fused groups, ATen for the rest")
def lower_cuda(graph: Graph, ctx: LowerContext) -> Executable:
    """Lower for CUDA inference."""
    ctx.note(f"aten executor: {len(graph)} steps (no Triton lowering yet)")
    return AtenExecutor(graph)
