"""Constant folding: evaluate nodes whose inputs are all constants."""

from __future__ import annotations

import torch

from accel.ir.graph import Graph
from accel.ir.ops import OpKind
from accel.ir.shapes import is_symbolic
from accel.passes.registry import PassContext, register_pass


@register_pass("fold-constants")
def fold_constants(graph: Graph, ctx: PassContext, *, max_elements: int = 1 << 20) -> Graph:
    """Replace nodes whose inputs are all constants by their computed value.

    A result larger than ``max_elements`` that is also larger than its inputs (an
    ``expand`` of a small constant, say) is left to run, not stored.
    """
    rw = graph.rewriter()
    values: dict = dict(graph.constants)
    folded = 0
    for n in graph.nodes:
        if any(v is not None and v not in values for v in n.inputs):
            continue
        if any(not o.type.is_static for o in n.outputs) or is_symbolic(tuple(n.attrs.values())):
            continue  # depends on a symbolic size (a fill expanded to the batch): no one value
        if n.opdef.kind is OpKind.FALLBACK and torch.Tag.nondeterministic_seeded in getattr(
                n.attrs.get("target"), "tags", ()):
            continue
        out_numel = sum(o.type.numel for o in n.outputs)
        in_numel = sum(v.type.numel for v in n.inputs if v is not None)
        if out_numel > max_elements and out_numel > in_numel:
            continue
        args = [values[v] if v is not None else None for v in n.inputs]
        with torch.no_grad():
            result = n.opdef.ref(*args, **n.attrs)
        results = result if isinstance(result, tuple | list) else (result,)
        for o, t in zip(n.outputs, results, strict=True):
            t = t.contiguous() if t.numel() < (1 << 16) or not t.is_contiguous() else t
            c = rw.const(t.clone() if t._base is not None else t, o.name)  # noqa: SLF001
            values[o] = t
            rw.replace(o, c)
        folded += 1
    if not folded:
        return graph
    ctx.note(f"folded {folded} node(s) into constants")
    return rw.finish()
