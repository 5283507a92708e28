"""Reduction kind: one program per row of the last dim, with pointwise prologue/epilogue.

Covers softmax, layer_norm, rms_norm, sum and mean over the last dimension. The whole row is
held in registers (``BLOCK`` = next power of two of the row length).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from accel.backends.triton.templates import pointwise
from accel.backends.triton.templates.expr import (
    Emitter,
    header,
    jit,
    kernel_name,
    pointwise_chain,
    reg_name,
)
from accel.ir.graph import Graph, Node
from accel.ir.shapes import Dim, compile_exprs, is_symbolic, upper_bound
from accel.runtime.schedule import sized


def _softmax(em: Emitter, node: Node, x: str, n: str) -> list[str]:
    return [f"xm = tl.where(mask, {x}, float('-inf'))",
            "row_max = tl.max(xm, 0)",
            "num = tl.where(mask, tl.exp(xm - row_max), 0.0)",
            f"{reg_name(node.output)} = num / tl.sum(num, 0)"]


def _layer_norm(em: Emitter, node: Node, x: str, n: str) -> list[str]:
    out, ins, eps = reg_name(node.output), node.inputs, node.attrs["eps"]
    lines = [f"row_mean = tl.sum(tl.where(mask, {x}, 0.0), 0) / {n}",
             f"centered = tl.where(mask, {x} - row_mean, 0.0)",
             f"row_var = tl.sum(centered * centered, 0) / {n}",
             f"{out} = centered * tl.rsqrt(row_var + {eps!r})"]
    if len(ins) > 1 and ins[1] is not None:
        lines.append(f"{out} = {out} * {em.load(ins[1], 'cols', 'mask')}")
    if len(ins) > 2 and ins[2] is not None:
        lines.append(f"{out} = {out} + {em.load(ins[2], 'cols', 'mask')}")
    return lines


def _rms_norm(em: Emitter, node: Node, x: str, n: str) -> list[str]:
    out, ins, eps = reg_name(node.output), node.inputs, node.attrs["eps"]
    if eps is None:
        eps = torch.finfo(ins[0].dtype).eps
    lines = [f"xz = tl.where(mask, {x}, 0.0)",
             f"{out} = xz * tl.rsqrt(tl.sum(xz * xz, 0) / {n} + {eps!r})"]
    if len(ins) > 1 and ins[1] is not None:
        lines.append(f"{out} = {out} * {em.load(ins[1], 'cols', 'mask')}")
    return lines


def _sum(em: Emitter, node: Node, x: str, n: str) -> list[str]:
    scale = f" / {n}" if node.op == "mean" else ""
    return [f"{reg_name(node.output)} = tl.sum(tl.where(mask, {x}, 0.0), 0){scale}"]


ROW_OPS: dict[str, Callable[[Emitter, Node, str, str], list[str]]] = {
    "softmax": _softmax, "layer_norm": _layer_norm, "rms_norm": _rms_norm,
    "sum": _sum, "mean": _sum,
}
"""Row reductions the template emits: op -> statements computing it on register ``x``
(a row of ``n`` elements, ``n`` a literal or a size argument; masked by ``mask``)."""
_SCALAR_OUT = frozenset({"sum", "mean"})
"""Row reductions with one value per row (no epilogue: their output shape differs)."""


MAX_ROW = 16384
"""Longest row held in registers."""


@dataclass(frozen=True)
class ReductionLaunch:
    """Launch facts of a row-reduction kernel."""

    rows: Dim
    """Programs: one per row."""
    n: Dim
    """Row length."""
    block: int
    """Next power of two of the row length (the whole row is in registers); for a symbolic
    row length, chosen per call."""
    num_warps: int
    sizes: tuple[Dim, ...] = ()
    """The symbolic sizes passed as the kernel's size arguments, in order."""
    interpret: bool = False
    """Built for Triton's interpreter (one warp)."""


def _warps(block: int, interpret: bool) -> int:
    return 1 if interpret else min(16, max(4, block // 512))


def _fits(node: Node, symbols: Any) -> bool:
    x = node.inputs[0]
    if not is_float(x) or not x.shape:
        return False
    n = x.shape[-1]
    longest = upper_bound(n, symbols)
    if longest is None or longest > MAX_ROW or n == 0:
        return False
    rank, a = len(x.shape), node.attrs
    if node.op == "softmax":
        return a["dim"] % rank == rank - 1
    if node.op in ("layer_norm", "rms_norm"):
        return len(a["normalized_shape"]) == 1
    return len(a["dims"]) == 1 and a["dims"][0] % rank == rank - 1 and a.get("dtype") is None


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """A last-dim reduction with its pointwise prologue and (norms, softmax) epilogue."""
    if not _fits(node, claims.graph.symbols):
        return None
    pro = claims.prologue(node, pointwise.fusible)
    epi = [] if node.op in _SCALAR_OUT else claims.epilogue(node, pointwise.fusible)
    return [*pro, node, *epi]


def emit(group: KernelGroup, device: Device = INTERPRETER) -> KernelSource[ReductionLaunch]:
    """Triton source for a row-reduction group (prologue, reduction, epilogue)."""
    interpret = device.interpret
    name = kernel_name(group.name, "reduction")
    anchor = group.anchor
    k = group.nodes.index(anchor)
    row_shape = anchor.inputs[0].shape
    n = row_shape[-1]
    rows = math.prod(row_shape[:-1])
    args = {v: f"in{i}" for i, v in enumerate(group.inputs)}
    args.update({v: f"out{i}" for i, v in enumerate(group.outputs)})
    em = Emitter(args)
    pointwise_chain(em, group.nodes[:k], row_shape, "idx", "mask")
    x = anchor.inputs[0]
    xreg = em.names[x] if x in em.names else em.load(x, "idx", "mask")
    em.lines.extend(ROW_OPS[anchor.op](em, anchor, xreg, em.dim(n)))
    em.names[anchor.output] = reg_name(anchor.output)
    scalar_out = anchor.op in _SCALAR_OUT
    pointwise_chain(em, group.nodes[k + 1:], anchor.output.shape, "idx", "mask")
    for v in group.outputs:
        em.store(v, "row" if scalar_out and v is anchor.output else "idx",
                 None if scalar_out and v is anchor.output else "mask")
    row_len = em.dim(n)
    body = em.body()
    params = ", ".join([*args.values(), *em.sizes.values(), "BLOCK: tl.constexpr"])
    src = (header("reduction", group.name, group.nodes, args) + f"""

{jit(list(em.sizes.values()))}
def {name}({params}):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < {row_len}
    idx = row * {row_len} + cols
{body}
""")
    block = triton.next_power_of_2(n) if isinstance(n, int) else 0
    return KernelSource(name, src, ReductionLaunch(rows, n, block, _warps(block, interpret),
                                                   tuple(em.sizes), interpret))


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """One program per row; a symbolic row length picks the block (a power of two) per call,
    so a kernel compiles once per block size, not per length."""
    assert kernel is not None
    facts: ReductionLaunch = kernel.source.launch
    fn = kernel.fn
    if not is_symbolic((facts.rows, facts.n, facts.sizes)):
        grid = (int(facts.rows),)

        def run(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
            fn[grid](*[t.contiguous() for t in ins], *outs, BLOCK=facts.block,
                     num_warps=facts.num_warps)
        return run
    values = compile_exprs([facts.rows, facts.n, *facts.sizes], graph.size_names)
    interpret = facts.interpret

    def run_sized(sizes: tuple[int, ...], ins: list[torch.Tensor],
                  outs: list[torch.Tensor]) -> None:
        rows, n, *dims = values(*sizes)
        block = triton.next_power_of_2(n)
        fn[(rows,)](*[t.contiguous() for t in ins], *outs, *dims, BLOCK=block,
                    num_warps=_warps(block, interpret))
    return sized(run_sized)


KIND = KernelKind("reduction", frozenset(ROW_OPS), claim, launch, emit=emit)
