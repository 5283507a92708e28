"""Fold inference batch norm into the conv or linear that feeds it.

    y = BN(conv(x, W, b))  ->  conv(x, W', b')
    σ = √(var + eps);  W' = W·γ/σ (per output channel);  b' = β + (b − μ)·γ/σ

Only the IR ``batch_norm`` op is folded: the frontend creates it for eval-mode BN only, so
training-mode BN (an ``aten`` fallback) is never touched.
"""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.common.batchnorm import bn_scale_shift
from accel.passes.pattern import Match, Pat, RewriteRules, Var
from accel.passes.registry import PassContext, register_pass

rules = RewriteRules("fold-bn")


def _foldable_producer(m: Match) -> bool:
    prod = m.node("producer")
    w = prod.inputs[1]
    b = prod.inputs[2] if len(prod.inputs) > 2 else None
    if not m.graph.is_const(w) or (b is not None and not m.graph.is_const(b)):
        return False
    # BN normalises dim 1: for a linear that is its output features only on 2-d outputs.
    return prod.op == "conv" or len(prod.outputs[0].shape) == 2


@rules.rule(Pat("batch_norm", Pat({"conv", "linear"}, Var("x"), name="producer", single_use=True,
                                  partial=True), partial=True))
def fold_batch_norm(m: Match, rw: Rewriter) -> Value | None:
    """conv/linear -> batch_norm becomes one conv/linear with rescaled weight and bias."""
    if not _foldable_producer(m):
        return None
    ss = bn_scale_shift(m.graph, m.root)
    if ss is None:
        return None
    scale, shift = ss
    prod = m.node("producer")
    w_t = m.graph.const(prod.inputs[1])
    b_in = prod.inputs[2] if len(prod.inputs) > 2 else None
    b_t = m.graph.const(b_in).double() if b_in is not None else torch.zeros_like(scale)
    if scale.numel() != w_t.shape[0]:
        return None
    view = (-1,) + (1,) * (w_t.dim() - 1)
    new_w = (w_t.double() * scale.view(view)).to(w_t.dtype)
    new_b = (shift + b_t * scale).to(w_t.dtype)
    w = rw.const(new_w, f"{prod.name}_bn_weight")
    b = rw.const(new_b, f"{prod.name}_bn_bias")
    return rw.op(prod.op, m["x"], w, b, name=prod.name, meta=prod.meta, **prod.attrs)


@register_pass("fold-bn")
def fold_bn(graph: Graph, ctx: PassContext) -> Graph:
    """Fold eval-mode batch_norm into the preceding conv/linear (when it is the only user)."""
    counts: dict[str, int] = {}
    new = rules.apply(graph, counts=counts)
    if new is graph:
        ctx.skip("no conv/linear -> batch_norm pair with constant statistics")
        return graph
    ctx.note(f"folded {counts.get('fold_batch_norm', 0)} batch_norm(s)")
    return new
