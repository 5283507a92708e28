"""Merge consecutive linears with nothing nonlinear between them, when that is cheaper.

    linear(linear(x, W1, b1), W2, b2) = linear(x, W2·W1, W2·b1 + b2)

only when d_in·d_out < d_mid·(d_in + d_out) (fewer multiply-adds and parameters).
"""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.pattern import Match, Pat, RewriteRules, Var
from accel.passes.registry import PassContext, register_pass

rules = RewriteRules("fold-linear")
_w1, _w2 = Var("w1", const=True), Var("w2", const=True)


def _const_bias(m: Match, node_name: str | None) -> tuple[bool, torch.Tensor | None]:
    node = m.node(node_name) if node_name else m.root
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if b is None:
        return True, None
    return m.graph.is_const(b), m.graph.const(b).double() if m.graph.is_const(b) else None


@rules.rule(Pat("linear", Pat("linear", Var("x"), _w1, name="inner", single_use=True, partial=True),
                _w2, partial=True))
def merge_linears(m: Match, rw: Rewriter) -> Value | None:
    """linear(linear(x)) -> one linear with the product weight."""
    w1, w2 = m.const("w1"), m.const("w2")
    d_out, d_mid = w2.shape
    d_in = w1.shape[1]
    if d_in * d_out >= d_mid * (d_in + d_out):
        return None
    ok1, b1 = _const_bias(m, "inner")
    ok2, b2 = _const_bias(m, None)
    if not (ok1 and ok2):
        return None
    w = w2.double() @ w1.double()
    b = torch.zeros(d_out, dtype=torch.float64) if b2 is None else b2
    if b1 is not None:
        b = b + w2.double() @ b1
    has_bias = b1 is not None or b2 is not None
    bias = rw.const(b.to(w2.dtype), f"{m.root.name}_bias") if has_bias else None
    return rw.op("linear", m["x"], rw.const(w.to(w2.dtype), f"{m.root.name}_weight"), bias,
                 name=m.root.name, meta=m.root.meta)


@register_pass("fold-linear")
def fold_linear(graph: Graph, ctx: PassContext) -> Graph:
    """Merge back-to-back linears into one where d_in·d_out < d_mid·(d_in + d_out)."""
    counts: dict[str, int] = {}
    new = rules.apply(graph, counts=counts)
    if new is graph:
        ctx.skip("no back-to-back linears that are cheaper merged")
        return graph
    ctx.note(f"merged {counts.get('merge_linears', 0)} linear pair(s)")
    return new
