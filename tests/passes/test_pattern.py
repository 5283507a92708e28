"""Declarative rewrites: Pat/Var matching (commutative, const, single_use, named nodes)."""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Rewriter, Value
from accel.ir.types import TensorType
from accel.passes.pattern import Match, Pat, RewriteRules, Var, match
from accel.testing import run_graph

F = TensorType((4,), torch.float32)


def _graph(build) -> Graph:  # noqa: ANN001
    rw = Rewriter()
    x = rw.add_input("x", F)
    rw.set_outputs(build(rw, x))
    return rw.finish()


def test_commutative_and_const_var() -> None:
    g = _graph(lambda rw, x: [rw.op("add", rw.const(torch.ones(4), "one"), x),
                              rw.op("add", x, rw.op("neg", x))])
    strict = Pat("add", Var("x"), Var("c", const=True))
    either = Pat("add", Var("x"), Var("c", const=True), commutative=True)
    first, second = g.find("add")
    assert match(strict, first, g) is None
    m = match(either, first, g)
    assert m is not None and m["x"] is g.inputs[0] and torch.equal(m.const("c"), torch.ones(4))
    assert match(either, second, g) is None  # neither input is a constant


def test_same_var_binds_same_value() -> None:
    g = _graph(lambda rw, x: [rw.op("mul", x, x), rw.op("mul", x, rw.op("neg", x))])
    square = Pat("mul", Var("a"), Var("a"))
    sq, other = g.find("mul")
    assert match(square, sq, g) is not None and match(square, other, g) is None


def test_single_use_and_named_nodes() -> None:
    def build(rw: Rewriter, x: Value) -> list[Value]:
        shared = rw.op("neg", x, name="shared")
        return [rw.op("exp", shared), rw.op("exp", rw.op("neg", x, name="private")), shared]

    g = _graph(build)
    pat = Pat("exp", Pat("neg", Var("x"), name="inner", single_use=True))
    exp_shared, exp_private = g.find("exp")
    assert match(pat, exp_shared, g) is None  # the neg is also a graph output
    m = match(pat, exp_private, g)
    assert m is not None and m.node("inner").name == "private" and m.has("inner")
    assert m["inner"] is g.node("private").output and not m.has("nope")


def test_attrs_where_and_op_sets() -> None:
    g = _graph(lambda rw, x: [rw.op("softmax", x, dim=0), rw.op("relu", x)])
    assert match(Pat("softmax", Var("x"), attrs={"dim": 0}), g.nodes[0], g) is not None
    assert match(Pat("softmax", Var("x"), attrs={"dim": 1}), g.nodes[0], g) is None
    assert match(Pat({"relu", "gelu"}, Var("x")), g.nodes[1], g) is not None
    pos = Pat("relu", Var("x", where=lambda v: v.shape == (5,)))
    assert match(pos, g.nodes[1], g) is None


def test_rules_apply_to_fixpoint_and_decline() -> None:
    rules = RewriteRules("test-double-neg")

    @rules.rule(Pat("neg", Pat("neg", Var("x"))))
    def double_neg(m: Match, rw: Rewriter) -> Value:
        return m["x"]

    @rules.rule(Pat("exp", Var("x")))
    def never(m: Match, rw: Rewriter) -> None:
        return None

    g = _graph(lambda rw, x: [rw.op("exp", rw.op("neg", rw.op("neg", rw.op("neg",
                                                                           rw.op("neg", x)))))])
    counts: dict[str, int] = {}
    new = rules.apply(g, counts=counts)
    assert [n.op for n in new] == ["exp"] and set(counts) == {"double_neg"}
    assert [n.op for n in g] == ["neg"] * 4 + ["exp"]  # the input graph is unchanged
    assert rules.apply(new) is new  # nothing matches: the same object comes back
    x = torch.randn(4)
    torch.testing.assert_close(run_graph(new, (x,))[0], x.exp())
