"""Pointwise template: a chain of elementwise ops with broadcasting, one flat 1-d launch."""

from __future__ import annotations

import math

from accel.codegen.fusion import KernelGroup
from accel.codegen.triton import KernelSource
from accel.codegen.triton.expr import Emitter, header, kernel_name, pointwise_chain

BLOCK = 1024


def emit(group: KernelGroup, *, interpret: bool = False) -> KernelSource:
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
    return KernelSource(name, src, {"numel": math.prod(out_shape), "block": BLOCK})
