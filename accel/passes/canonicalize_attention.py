"""Recognise eager attention and replace it with one ``attention`` op.

    matmul(softmax(matmul(q, kᵀ) · c [+ mask], dim=-1), v)  ->  attention(q, k, v, mask, scale=c)

The scale may be a ``mul`` or ``div`` by a constant scalar (or absent: scale 1); the mask is
an optional additive float tensor added after the scaling. ``kᵀ`` is usually a ``permute``
swapping the last two dims (Hugging Face ``key.transpose(-1, -2)``); otherwise a permute of
the given tensor is inserted.
"""

from __future__ import annotations

from dataclasses import dataclass

from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.passes.pattern import Pat, Var, match
from accel.passes.registry import PassContext, register_pass


@dataclass(frozen=True)
class Scores:
    """``matmul(q, kT) * scale``: the logits before the mask."""

    q: Value
    k_t: Value
    scale: float


def _scalar(graph: Graph, v: Value | None) -> float | None:
    if v is None or not graph.is_const(v):
        return None
    t = graph.const(v)
    return float(t.reshape(())) if t.numel() == 1 and t.is_floating_point() else None


def _scores(graph: Graph, v: Value, scale: float = 1.0) -> Scores | None:
    """Parse ``v`` as ``matmul(q, kT)`` times constant scalars (every step single-use)."""
    p = graph.producer(v)
    if p is None or graph.num_uses(v) != 1:
        return None
    if p.op == "matmul":
        q, k_t = p.inputs
        return Scores(q, k_t, scale) if q.shape[:-2] == k_t.shape[:-2] else None
    if p.op in ("mul", "div") and p.attrs.get("rounding_mode") is None:
        a, b = p.inputs
        orders = [(a, b), (b, a)] if p.op == "mul" else [(a, b)]
        for x, c in orders:
            factor = _scalar(graph, c)
            if factor is not None and x.shape == v.shape and (p.op == "mul" or factor != 0):
                return _scores(graph, x, scale * factor if p.op == "mul" else scale / factor)
    return None


def _logits(graph: Graph, v: Value) -> tuple[Scores, Value | None] | None:
    """Parse softmax's input as scores plus an optional additive mask."""
    p = graph.producer(v)
    if p is not None and p.op == "add" and graph.num_uses(v) == 1:
        for s, mask in (p.inputs, tuple(reversed(p.inputs))):
            scores = _scores(graph, s)
            if scores is not None and s.shape == v.shape and mask.dtype == v.dtype:
                return scores, mask
    scores = _scores(graph, v)
    return (scores, None) if scores is not None else None


def _key(rw: Rewriter, graph: Graph, k_t: Value) -> Value:
    """k from kᵀ: the permute's input when kᵀ = permute(k, swap last two), else a new permute."""
    rank = len(k_t.shape)
    swap = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    p = graph.producer(k_t)
    if p is not None and p.op == "permute" and tuple(p.attrs["dims"]) == swap:
        return p.inputs[0]
    return rw.op("permute", k_t, dims=swap)


def _softmax_over_last_dim(sm: Node) -> bool:
    rank = len(sm.outputs[0].shape)
    return rank >= 3 and sm.attrs["dim"] % rank == rank - 1


_ATTENTION = Pat("matmul", Pat("softmax", Var("logits"), name="probs", single_use=True,
                               where=_softmax_over_last_dim), Var("v"))
"""``matmul(softmax(logits, dim=-1), v)``; the logits are parsed by :func:`_logits`."""


def _match(graph: Graph, node: Node) -> tuple[Scores, Value | None, Value] | None:
    """``node`` as the final ``matmul(softmax(...), v)``: (scores, mask, v)."""
    m = match(_ATTENTION, node, graph)
    if m is None or (parsed := _logits(graph, m["logits"])) is None:
        return None
    (scores, mask), probs, v = parsed, m["probs"], m["v"]
    q, k_t, rank = scores.q, scores.k_t, len(probs.shape)
    if not (len(q.shape) == len(k_t.shape) == len(v.shape) == rank
            and q.shape[:-2] == k_t.shape[:-2] == v.shape[:-2] and k_t.shape[-1] == v.shape[-2]
            and q.dtype == v.dtype == probs.dtype and q.dtype.is_floating_point):
        return None
    return scores, mask, v


@register_pass("canonicalize-attention")
def canonicalize_attention(graph: Graph, ctx: PassContext) -> Graph:
    """Replace matmul -> scale -> (+mask) -> softmax -> matmul with one attention op."""
    rw = Rewriter(graph, pass_name="canonicalize-attention")
    found = 0
    for node in graph.nodes:
        matched = _match(graph, node)
        if matched is None:
            continue
        scores, mask, v = matched
        k = _key(rw, graph, scores.k_t)
        out = rw.op("attention", scores.q, k, v, mask, scale=scores.scale,
                    name=f"{node.name}_attention", meta=node.meta)
        rw.replace(node.outputs[0], out)
        found += 1
    if not found:
        ctx.skip("no matmul -> softmax -> matmul attention pattern")
        return graph
    ctx.note(f"replaced {found} eager attention(s) with the attention op")
    return rw.finish()
