"""Removal of no-ops: identity reshapes/permutes/casts/expands/slices, chains of reshapes
and permutes, arithmetic with the neutral element."""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.pattern import Match, Pat, RewriteRules, Var
from accel.passes.registry import PassContext, register_pass

x, y, c = Var("x"), Var("y"), Var("c", const=True)
rules = RewriteRules("remove-noops")


def _same_type(m: Match, name: str = "x") -> bool:
    out, inp = m.root.outputs[0], m[name]
    return out.shape == inp.shape and out.dtype == inp.dtype


@rules.rule(Pat({"reshape", "expand", "cast"}, x))
def identity_view(m: Match, rw: Rewriter) -> Value | None:
    """reshape/expand/cast that changes nothing."""
    return m["x"] if _same_type(m) else None


@rules.rule(Pat("permute", x))
def identity_permute(m: Match, rw: Rewriter) -> Value | None:
    """permute by the identity permutation."""
    dims = m.root.attrs["dims"]
    return m["x"] if tuple(dims) == tuple(range(len(dims))) else None


@rules.rule(Pat("slice", x))
def full_slice(m: Match, rw: Rewriter) -> Value | None:
    """slice covering the whole dimension."""
    return m["x"] if _same_type(m) and m.root.attrs["step"] == 1 else None


@rules.rule(Pat("concat", x))
def single_concat(m: Match, rw: Rewriter) -> Value | None:
    """concat of one tensor."""
    return m["x"]


@rules.rule(Pat("reshape", Pat("reshape", x)))
def reshape_chain(m: Match, rw: Rewriter) -> Value:
    """reshape(reshape(x)) -> reshape(x)."""
    shape = m.root.attrs["shape"]
    return m["x"] if m["x"].shape == shape else rw.op("reshape", m["x"], shape=shape)


@rules.rule(Pat("permute", Pat("permute", x, name="inner")))
def permute_chain(m: Match, rw: Rewriter) -> Value:
    """permute(permute(x, p), q) -> permute(x, p[q])."""
    p, q = m.node("inner").attrs["dims"], m.root.attrs["dims"]
    dims = tuple(p[i] for i in q)
    return m["x"] if dims == tuple(range(len(dims))) else rw.op("permute", m["x"], dims=dims)


def _is_const_value(m: Match, value: float) -> bool:
    t = m.const("c")
    return t.numel() > 0 and bool(torch.all(t == value))


@rules.rule(Pat({"mul"}, x, c, commutative=True))
def mul_one(m: Match, rw: Rewriter) -> Value | None:
    """x * 1 -> x (when the broadcast leaves x's shape and dtype unchanged)."""
    return m["x"] if _same_type(m) and _is_const_value(m, 1) else None


@rules.rule(Pat("div", x, c))
def div_one(m: Match, rw: Rewriter) -> Value | None:
    """x / 1 -> x."""
    ok = _same_type(m) and m.root.attrs["rounding_mode"] is None and _is_const_value(m, 1)
    return m["x"] if ok else None


@rules.rule(Pat({"add"}, x, c, commutative=True))
def add_zero(m: Match, rw: Rewriter) -> Value | None:
    """x + 0 -> x."""
    return m["x"] if _same_type(m) and _is_const_value(m, 0) else None


@rules.rule(Pat("sub", x, c))
def sub_zero(m: Match, rw: Rewriter) -> Value | None:
    """x - 0 -> x."""
    return m["x"] if _same_type(m) and _is_const_value(m, 0) else None


@register_pass("remove-noops")
def remove_noops(graph: Graph, ctx: PassContext) -> Graph:
    """Remove ops that do nothing and collapse reshape/permute chains."""
    counts: dict[str, int] = {}
    new = rules.apply(graph, counts=counts)
    if new is not graph:
        ctx.note(", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    return new
