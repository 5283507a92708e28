"""Pointwise kind: a chain of elementwise ops with broadcasting, one flat 1-d launch.

Claims every float pointwise op of :data:`~.expr.POINTWISE_EXPR` left after the anchor
kinds took their prologues and epilogues, with the chain of its single-use consumers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton

from accel.backends.triton.kernel import (
    CompiledKernel,
    KernelGroup,
    KernelKind,
    KernelSource,
    is_float,
)
from accel.backends.triton.partition import Claims
from accel.backends.triton.templates.expr import (
    POINTWISE_EXPR,
    Emitter,
    header,
    kernel_name,
    pointwise_chain,
)
from accel.ir.graph import Graph, Node
from accel.ir.ops.registry import OpKind

BLOCK = 1024


@dataclass(frozen=True)
class PointwiseLaunch:
    """Launch facts of a pointwise kernel."""

    numel: int
    """Elements of the output (one lane each)."""
    block: int
    """Elements per program."""


def fusible(node: Node) -> bool:
    """Whether ``node`` is a float pointwise op the templates can emit (also as an epilogue
    or prologue of another kind)."""
    return (node.op in POINTWISE_EXPR and node.opdef.kind is OpKind.POINTWISE
            and len(node.outputs) == 1
            and all(is_float(v) for v in (*node.inputs, node.output))
            and node.output.type.numel > 0
            and not (node.op == "div" and node.attrs.get("rounding_mode") is not None))


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """The pointwise node and the chain of its fusible consumers."""
    return [node, *claims.epilogue(node, fusible)] if fusible(node) else None


def emit(group: KernelGroup, interpret: bool = False) -> KernelSource[PointwiseLaunch]:
    """Triton source computing ``group``'s pointwise chain over its output shape."""
    name = kernel_name(group.name, "pointwise")
    out_shape = group.nodes[-1].output.shape
    args = {v: f"in{i}" for i, v in enumerate(group.inputs)}
    args.update({v: f"out{i}" for i, v in enumerate(group.outputs)})
    em = Emitter(args)
    pointwise_chain(em, group.nodes, out_shape, "idx", "mask")
    for v in group.outputs:
        em.store(v, "idx", "mask")
    params = ", ".join([*args.values(), "numel", "BLOCK: tl.constexpr"])
    src = (header("pointwise", group.name, group.nodes, args) + f"""

@triton.jit
def {name}({params}):
    pid = tl.program_id(0)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
{em.body()}
""")
    return KernelSource(name, src, PointwiseLaunch(math.prod(out_shape), BLOCK))


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """One program per ``BLOCK`` elements; inputs made contiguous (the index maps assume it)."""
    assert kernel is not None
    facts: PointwiseLaunch = kernel.source.launch
    fn, grid = kernel.fn, (triton.cdiv(facts.numel, facts.block),)

    def run(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        fn[grid](*[t.contiguous() for t in ins], *outs, facts.numel, BLOCK=facts.block)
    return run


KIND = KernelKind("pointwise", frozenset(POINTWISE_EXPR), claim, launch, emit=emit, chains=True)
