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
    INTERPRETER,
    CompiledKernel,
    Device,
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
    jit,
    kernel_name,
    pointwise_chain,
)
from accel.ir.graph import Graph, Node
from accel.ir.ops.registry import OpKind
from accel.ir.shapes import Dim, compile_exprs, is_symbolic
from accel.runtime.schedule import sized

BLOCK = 1024


@dataclass(frozen=True)
class PointwiseLaunch:
    """Launch facts of a pointwise kernel."""

    numel: Dim
    """Elements of the output (one lane each)."""
    block: int
    """Elements per program."""
    sizes: tuple[Dim, ...] = ()
    """The symbolic sizes passed as the kernel's size arguments, in order."""


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


def emit(group: KernelGroup, device: Device = INTERPRETER) -> KernelSource[PointwiseLaunch]:
    """Triton source computing ``group``'s pointwise chain over its output shape."""
    name = kernel_name(group.name, "pointwise")
    out_shape = group.nodes[-1].output.shape
    args = {v: f"in{i}" for i, v in enumerate(group.inputs)}
    args.update({v: f"out{i}" for i, v in enumerate(group.outputs)})
    em = Emitter(args)
    pointwise_chain(em, group.nodes, out_shape, "idx", "mask")
    for v in group.outputs:
        em.store(v, "idx", "mask")
    params = ", ".join([*args.values(), "numel", *em.sizes.values(), "BLOCK: tl.constexpr"])
    src = (header("pointwise", group.name, group.nodes, args) + f"""

{jit(["numel", *em.sizes.values()] if em.sizes or is_symbolic(math.prod(out_shape)) else [])}
def {name}({params}):
    pid = tl.program_id(0)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < numel
{em.body()}
""")
    return KernelSource(name, src, PointwiseLaunch(math.prod(out_shape), BLOCK,
                                                   tuple(em.sizes)))


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """One program per ``BLOCK`` elements; inputs made contiguous (the index maps assume it).
    Symbolic sizes are evaluated per call from the call's symbol sizes."""
    assert kernel is not None
    facts: PointwiseLaunch = kernel.source.launch
    fn, block = kernel.fn, facts.block
    if not is_symbolic((facts.numel, facts.sizes)):
        numel = int(facts.numel)
        grid = (triton.cdiv(numel, block),)

        def run(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
            fn[grid](*[t.contiguous() for t in ins], *outs, numel, BLOCK=block)
        return run
    values = compile_exprs([facts.numel, *facts.sizes], graph.size_names)

    def run_sized(sizes: tuple[int, ...], ins: list[torch.Tensor],
                  outs: list[torch.Tensor]) -> None:
        numel, *dims = values(*sizes)
        fn[(triton.cdiv(numel, block),)](*[t.contiguous() for t in ins], *outs, numel, *dims,
                                          BLOCK=block)
    return sized(run_sized)


KIND = KernelKind("pointwise", frozenset(POINTWISE_EXPR), claim, launch, emit=emit, chains=True)
