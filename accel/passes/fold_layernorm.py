"""Fold a LayerNorm's affine (γ, β) into the linears that are its only users.

    linear(LN(x)·γ + β, W, b) = linear(LN(x), W·diag(γ), b + W·β)

computed in float64 and cast back; the LayerNorm keeps no affine.
"""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Node, Rewriter
from accel.passes.registry import PassContext, register_pass


def _affine(graph: Graph, ln: Node) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
    """The constant (γ, β) of ``ln`` over its last dim, or None when they cannot fold."""
    weight = ln.inputs[1] if len(ln.inputs) > 1 else None
    bias = ln.inputs[2] if len(ln.inputs) > 2 else None
    if weight is None and bias is None:
        return None
    if any(v is not None and not graph.is_const(v) for v in (weight, bias)):
        return None
    if len(ln.attrs["normalized_shape"]) != 1:
        return None
    gamma = graph.const(weight).double() if weight is not None else None
    beta = graph.const(bias).double() if bias is not None else None
    return gamma, beta


def _linear_users(graph: Graph, ln: Node) -> list[Node] | None:
    """The users of ``ln``'s output when all are linears reading it as x with const weights."""
    out = ln.outputs[0]
    users = graph.users(out)
    if not users or graph.num_uses(out) != len(users):
        return None
    for u in users:
        b = u.inputs[2] if len(u.inputs) > 2 else None
        if (u.op != "linear" or u.inputs[0] is not out or u.inputs[1] is out or b is out
                or not graph.is_const(u.inputs[1]) or (b is not None and not graph.is_const(b))):
            return None
    return users


@register_pass("fold-layernorm")
def fold_layernorm(graph: Graph, ctx: PassContext) -> Graph:
    """Fold LayerNorm weight/bias into the linears that only read it."""
    rw = Rewriter(graph, pass_name="fold-layernorm")
    folded = 0
    for ln in graph.find("layer_norm"):
        affine = _affine(graph, ln)
        users = _linear_users(graph, ln) if affine is not None else None
        if affine is None or users is None:
            continue
        gamma, beta = affine
        plain = rw.op("layer_norm", ln.inputs[0], name=ln.name, meta=ln.meta, **ln.attrs)
        for lin in users:
            w = graph.const(lin.inputs[1])
            b_v = lin.inputs[2] if len(lin.inputs) > 2 else None
            w64 = w.double()
            b64 = graph.const(b_v).double() if b_v is not None else torch.zeros(w.shape[0],
                                                                                dtype=torch.float64)
            if beta is not None:
                b64 = b64 + w64 @ beta
            if gamma is not None:
                w64 = w64 * gamma.view(1, -1)
            new_w = rw.const(w64.to(w.dtype), f"{lin.name}_ln_weight")
            new_b = rw.const(b64.to(w.dtype), f"{lin.name}_ln_bias")
            rw.replace(lin.outputs[0], rw.op("linear", plain, new_w, new_b, name=lin.name,
                                             meta=lin.meta))
        folded += 1
    if not folded:
        ctx.skip("no LayerNorm with a constant affine whose only users are linears")
        return graph
    ctx.note(f"folded the affine of {folded} LayerNorm(s)")
    return rw.finish()
