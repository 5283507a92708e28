"""The Triton backend's table of kernel kinds, in the order the partitioner offers nodes.

Each entry is a :class:`~accel.backends.triton.kernel.KernelKind` defined in the module that
implements it; to change how one kind of kernel claims, emits or launches, open that module:

| kind | module | what it runs |
|---|---|---|
| ``sparse24`` | ``kernels/sparse24.py`` | 2:4 linears on semi-structured sparse kernels (sm80+) |
| ``int8_linear`` | ``kernels/int8.py`` | int8 linears, int8 matmul with fused dequantization |
| ``weight_only`` | ``kernels/weight_only.py`` | int4/int8 weight-only linears, in-loop dequant |
| ``token`` | ``kernels/tokens.py`` | token merging/pruning: gather + segmented reduce |
| ``attention`` | ``templates/attention.py`` | flash attention with bias and causal mask |
| ``matmul`` | ``templates/matmul.py`` | linear/matmul with a pointwise epilogue |
| ``reduction`` | ``templates/reduction.py`` | last-dim reductions and norms, prologue + epilogue |
| ``pointwise`` | ``templates/pointwise.py`` | chains of elementwise ops (second sweep) |
| ``aten`` | here | every node left: its ATen reference implementation |
"""

from __future__ import annotations

from collections.abc import Callable

from accel.backends.aten import bind
from accel.backends.triton.kernel import Args, CompiledKernel, KernelGroup, KernelKind
from accel.backends.triton.kernels import int8, sparse24, tokens, weight_only
from accel.backends.triton.partition import Claims
from accel.backends.triton.templates import attention, matmul, pointwise, reduction
from accel.ir.graph import Graph, Node


def _claim_any(claims: Claims, node: Node) -> list[Node]:
    return [node]


def _launch_aten(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    (node,) = group.nodes
    return bind(node.opdef.ref, node.attrs, graph.size_names)


ATEN = KernelKind("aten", None, _claim_any, _launch_aten, args=Args.NODE, into_buffers=False,
                  runs_on="aten")
"""The catch-all: a node no kernel kind claimed runs its reference implementation."""

KINDS: tuple[KernelKind, ...] = (
    sparse24.KIND, int8.KIND, weight_only.KIND, tokens.KIND, attention.KIND, matmul.KIND,
    reduction.KIND, pointwise.KIND, ATEN,
)
"""Every kind, in claim order (anchors before chains, aten last)."""

BY_NAME: dict[str, KernelKind] = {k.name: k for k in KINDS}
"""The kinds by name."""
