"""Common-subexpression elimination: one node per (op, inputs, attributes), one constant
per distinct tensor."""

from __future__ import annotations

import hashlib

import torch

from accel.ir.graph import Graph, Node, Value
from accel.ir.ops import OpKind
from accel.passes.registry import PassContext, register_pass

_SMALL = 4096  # constants up to this many elements are compared by content


def _const_key(t: torch.Tensor) -> tuple:
    if t.numel() <= _SMALL:
        flat = torch.empty(t.numel(), dtype=t.dtype).copy_(t.detach().cpu().reshape(-1))
        data = flat.view(torch.uint8).numpy().tobytes() if t.numel() else b""  # (a fresh
        # buffer: an expanded one-element constant has stride 0, which cannot be viewed)
        return ("data", t.dtype, tuple(t.shape), hashlib.sha1(data).hexdigest())
    return ("ptr", t.dtype, tuple(t.shape), tuple(t.stride()), t.data_ptr(), t.device.type)


@register_pass("cse")
def cse(graph: Graph, ctx: PassContext) -> Graph:
    """Merge nodes computing the same thing and constants holding the same tensor."""
    rw = graph.rewriter()
    canon: dict[tuple, Value] = {}
    merged_consts = 0
    for v, t in graph.constants.items():
        key = _const_key(t)
        if key in canon:
            rw.replace(v, canon[key])
            merged_consts += 1
        else:
            canon[key] = v
    seen: dict[tuple, tuple[Value, ...]] = {}
    merged = 0
    for n in graph.nodes:
        if _random(n):
            continue  # two draws of torch.randn_like(x) are two different tensors
        inputs = tuple(rw.resolve(v) if v is not None else None for v in n.inputs)
        try:
            key = (n.op, tuple(id(v) for v in inputs), tuple(sorted(n.attrs.items())))
            hash(key)
        except TypeError:
            continue
        if key in seen:
            for old, new in zip(n.outputs, seen[key], strict=True):
                rw.replace(old, new)
            merged += 1
        else:
            seen[key] = n.outputs
    if not merged and not merged_consts:
        return graph
    ctx.note(f"merged {merged} node(s), {merged_consts} constant(s)")
    return rw.finish()


def _random(n: Node) -> bool:
    """Whether ``n`` samples random numbers (an ATen fallback tagged nondeterministic_seeded)."""
    return n.opdef.kind is OpKind.FALLBACK and torch.Tag.nondeterministic_seeded in getattr(
        n.attrs.get("target"), "tags", ())
