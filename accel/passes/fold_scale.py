"""Fold constant per-channel scales into the neighbouring linear or conv.

    mul(linear(x, W, b), γ)   ->  linear(x, W·γ[:, None], b·γ)     (LayerScale)
    mul(conv(x, W, b), γ)     ->  conv(x, W·γ[:, None, None, None], b·γ)
    linear(mul(x, s), W, b)   ->  linear(x, W·s[None, :], b)        (input scale)

``div`` by a constant is a ``mul`` by its reciprocal. A scale folds only when it varies
along the channel the weight indexes and broadcasts to the same shape.
"""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.pattern import Match, Pat, RewriteRules, Var
from accel.passes.registry import PassContext, register_pass

x, s = Var("x"), Var("s", const=True)
rules = RewriteRules("fold-scale")


def _channel_scale(t: torch.Tensor, out_shape: tuple[int, ...], channel_dim: int,
                   channels: int) -> torch.Tensor | None:
    """``t`` as a float64 vector over ``channels`` when it only varies along ``channel_dim``."""
    rank = len(out_shape)
    if t.dim() > rank:
        return None
    full = t.reshape((1,) * (rank - t.dim()) + tuple(t.shape))
    if any(n != 1 for d, n in enumerate(full.shape) if d != channel_dim % rank):
        return None
    return full.reshape(-1).double().expand(channels).clone()


def _scale_of(m: Match) -> torch.Tensor:
    t = m.const("s").double()
    return 1.0 / t if m.root.op == "div" else t


def _is_float_scale(m: Match) -> bool:
    return m.const("s").is_floating_point() and m.root.attrs.get("rounding_mode") is None


@rules.rule(Pat({"mul", "div"}, Pat({"linear", "conv"}, x, name="producer", single_use=True,
                                    partial=True), s, commutative=True))
def scale_after(m: Match, rw: Rewriter) -> Value | None:
    """(linear|conv)(x) * γ -> (linear|conv)(x) with γ folded per output channel."""
    prod = m.node("producer")
    if m.root.op == "div" and m.root.inputs[0] is not prod.outputs[0]:
        return None  # γ / y is not a scale of y
    w_v = prod.inputs[1]
    b_v = prod.inputs[2] if len(prod.inputs) > 2 else None
    out = prod.outputs[0]
    if (not _is_float_scale(m) or not m.graph.is_const(w_v)
            or (b_v is not None and not m.graph.is_const(b_v))
            or m.root.outputs[0].type.shape != out.shape or m.root.outputs[0].dtype != out.dtype):
        return None
    w = m.graph.const(w_v)
    channel_dim = -1 if prod.op == "linear" else 1
    gamma = _channel_scale(_scale_of(m), out.shape, channel_dim, w.shape[0])
    if gamma is None:
        return None
    new_w = (w.double() * gamma.view((-1,) + (1,) * (w.dim() - 1))).to(w.dtype)
    new_b = None
    if b_v is not None:
        new_b = rw.const((m.graph.const(b_v).double() * gamma).to(w.dtype), f"{prod.name}_b")
    return rw.op(prod.op, m["x"], rw.const(new_w, f"{prod.name}_w"), new_b, name=prod.name,
                 meta=prod.meta, **prod.attrs)


@rules.rule(Pat("linear", Pat({"mul", "div"}, x, s, name="scaled", single_use=True,
                              commutative=True), Var("w", const=True), partial=True))
def scale_before(m: Match, rw: Rewriter) -> Value | None:
    """linear(x * s, W, b) -> linear(x, W·s, b) when s varies along the input features only."""
    scaled = m.node("scaled")
    if scaled.op == "div" and scaled.inputs[0] is not m["x"]:
        return None
    if (not m.const("s").is_floating_point() or scaled.attrs.get("rounding_mode") is not None
            or scaled.outputs[0].shape != m["x"].shape or scaled.outputs[0].dtype != m["x"].dtype):
        return None
    t = m.const("s").double()
    t = 1.0 / t if scaled.op == "div" else t
    w = m.const("w")
    s_in = _channel_scale(t, m["x"].shape, -1, w.shape[1])
    if s_in is None:
        return None
    new_w = rw.const((w.double() * s_in.view(1, -1)).to(w.dtype), f"{m.root.name}_w")
    b = m.root.inputs[2] if len(m.root.inputs) > 2 else None
    return rw.op("linear", m["x"], new_w, b, name=m.root.name, meta=m.root.meta)


@register_pass("fold-scale")
def fold_scale(graph: Graph, ctx: PassContext) -> Graph:
    """Fold constant per-channel scales (LayerScale, input scales) into linear/conv weights."""
    counts: dict[str, int] = {}
    new = rules.apply(graph, counts=counts)
    if new is graph:
        ctx.skip("no constant per-channel scale next to a linear or conv")
        return graph
    ctx.note(", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return new
