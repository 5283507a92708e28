"""Reduction template: one program per row of the last dim, with pointwise prologue/epilogue.

Covers softmax, layer_norm, rms_norm, sum and mean over the last dimension. The whole row is
held in registers (``BLOCK`` = next power of two of the row length).
"""

from __future__ import annotations

import math

import torch
import triton

from accel.codegen.fusion import ROW_REDUCTIONS, KernelGroup
from accel.codegen.triton import KernelSource
from accel.codegen.triton.expr import Emitter, header, kernel_name, pointwise_chain, reg_name
from accel.errors import AccelValueError
from accel.ir.graph import Node


def _row_op(em: Emitter, node: Node, x: str, n: int) -> tuple[list[str], str]:
    """Statements computing the reduction ``node`` on register ``x`` (masked by ``mask``)."""
    out = reg_name(node.output)
    ins = node.inputs
    if node.op == "softmax":
        return [f"xm = tl.where(mask, {x}, float('-inf'))",
                "row_max = tl.max(xm, 0)",
                "num = tl.where(mask, tl.exp(xm - row_max), 0.0)",
                f"{out} = num / tl.sum(num, 0)"], out
    if node.op == "layer_norm":
        eps = node.attrs["eps"]
        lines = [f"row_mean = tl.sum(tl.where(mask, {x}, 0.0), 0) / {n}",
                 f"centered = tl.where(mask, {x} - row_mean, 0.0)",
                 f"row_var = tl.sum(centered * centered, 0) / {n}",
                 f"{out} = centered * tl.rsqrt(row_var + {eps!r})"]
        if len(ins) > 1 and ins[1] is not None:
            lines.append(f"{out} = {out} * {em.load(ins[1], 'cols', 'mask')}")
        if len(ins) > 2 and ins[2] is not None:
            lines.append(f"{out} = {out} + {em.load(ins[2], 'cols', 'mask')}")
        return lines, out
    if node.op == "rms_norm":
        eps = node.attrs["eps"]
        if eps is None:
            eps = torch.finfo(ins[0].dtype).eps
        lines = [f"xz = tl.where(mask, {x}, 0.0)",
                 f"{out} = xz * tl.rsqrt(tl.sum(xz * xz, 0) / {n} + {eps!r})"]
        if len(ins) > 1 and ins[1] is not None:
            lines.append(f"{out} = {out} * {em.load(ins[1], 'cols', 'mask')}")
        return lines, out
    if node.op in ("sum", "mean"):
        scale = f" / {n}" if node.op == "mean" else ""
        return [f"{out} = tl.sum(tl.where(mask, {x}, 0.0), 0){scale}"], out
    raise AccelValueError(f"node {node.name}: '{node.op}' is not a row reduction "
                          f"({sorted(ROW_REDUCTIONS)})")


def emit(group: KernelGroup, *, interpret: bool = False) -> KernelSource:
    """Triton source for a row-reduction group (prologue, reduction, epilogue)."""
    name = kernel_name(group.name, "reduction")
    k = next(i for i, n in enumerate(group.nodes) if n.op in ROW_REDUCTIONS)
    anchor = group.nodes[k]
    row_shape = anchor.inputs[0].shape
    n = row_shape[-1]
    rows = math.prod(row_shape[:-1])
    args = {v: f"in{i}" for i, v in enumerate(group.inputs)}
    args.update({v: f"out{i}" for i, v in enumerate(group.outputs)})
    em = Emitter(args)
    pointwise_chain(em, group.nodes[:k], row_shape, "idx", "mask")
    x = anchor.inputs[0]
    xreg = em.names[x] if x in em.names else em.load(x, "idx", "mask")
    lines, _ = _row_op(em, anchor, xreg, n)
    em.lines.extend(lines)
    em.names[anchor.output] = reg_name(anchor.output)
    scalar_out = anchor.op in ("sum", "mean")
    pointwise_chain(em, group.nodes[k + 1:], anchor.output.shape, "idx", "mask")
    for v in group.outputs:
        em.store(v, "row" if scalar_out and v is anchor.output else "idx",
                 None if scalar_out and v is anchor.output else "mask")
    params = ", ".join([*args.values(), "BLOCK: tl.constexpr"])
    src = (header("reduction", group.name, group.nodes, args) + f"""

@triton.jit
def {name}({params}):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < {n}
    idx = row * {n} + cols
{em.body()}
""")
    block = triton.next_power_of_2(n)
    num_warps = 1 if interpret else min(16, max(4, block // 512))
    return KernelSource(name, src, {"rows": rows, "block": block, "num_warps": num_warps})
