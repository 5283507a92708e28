"""Declarative rewrites: Pat/Var matching (commutative, const, single_use, named nodes), and
the rewrite engine (root-op index, worklist sweeps equal to naive sweeps, loud failures)."""

from __future__ import annotations

import sys

import pytest
import torch

from accel.errors import AccelValueError, PassError
from accel.frontend import capture
from accel.ir.graph import Graph, Rewriter, Value
from accel.ir.types import TensorType
from accel.models import get_model
from accel.passes import PassContext, parse_pipeline
from accel.passes.pattern import Match, Pat, RewriteRules, SweepStats, Var, match
from accel.passes.registry import get_pass
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


# ---- the rewrite engine: root-op index, worklist sweeps, loud failures ----------------------
def test_rules_are_indexed_by_root_op_in_registration_order() -> None:
    rules = RewriteRules("test-index")
    tried: list[str] = []

    @rules.rule(Pat({"exp", "neg"}, Var("x")))
    def first(m: Match, rw: Rewriter) -> None:
        tried.append(f"first:{m.root.op}")

    @rules.rule(Pat("neg", Var("x")))
    def second(m: Match, rw: Rewriter) -> Value:
        tried.append("second")
        return rw.op("mul", m["x"], rw.const(torch.tensor(-1.0), "minus_one"))

    assert [r.name for r in rules.rules_for("neg")] == ["first", "second"]
    assert [r.name for r in rules.rules_for("exp")] == ["first"] and not rules.rules_for("relu")
    relus = 20

    def build(rw: Rewriter, x: Value) -> list[Value]:
        for _ in range(relus):
            x = rw.op("relu", x)
        return [rw.op("exp", rw.op("neg", x))]

    stats: list[SweepStats] = []
    new = rules.apply(_graph(build), stats=stats)
    assert new.op_counts() == {"relu": relus, "mul": 1, "exp": 1}
    assert tried[:3] == ["first:neg", "second", "first:exp"]
    first_sweep = stats[0]
    assert len(first_sweep.visited) == 2 and first_sweep.attempts == 3  # no relu is tried


def test_second_sweep_only_revisits_what_changed() -> None:
    rules = RewriteRules("test-worklist")

    @rules.rule(Pat("neg", Pat("neg", Var("x"))))
    def double_neg(m: Match, rw: Rewriter) -> Value:
        return m["x"]

    @rules.rule(Pat("exp", Var("x")))
    def never(m: Match, rw: Rewriter) -> None:
        return None

    rw = Rewriter()
    x, y = rw.add_input("x", F), rw.add_input("y", F)
    chain = y
    for _ in range(30):  # an untouched region: 30 exps the rules look at once
        chain = rw.op("exp", chain)
    four_negs = x
    for _ in range(4):
        four_negs = rw.op("neg", four_negs)
    rw.set_outputs([chain, rw.op("exp", four_negs, name="after_negs")])
    graph = rw.finish()
    stats: list[SweepStats] = []
    new = rules.apply(graph, stats=stats)
    assert [s.fired["double_neg"] for s in stats] == [2, 0]
    assert len(stats[0].visited) == 35 and stats[0].attempts == 35
    # the second sweep only tries the exp whose input changed, not the 30 untouched ones
    assert stats[1].visited == ["after_negs"] and stats[1].attempts == 1
    # Rewriter.finish keeps the nodes whose inputs did not change: what the worklist relies on
    untouched = [n for n in graph.nodes if n.op == "exp" and n.name != "after_negs"]
    assert all(any(n is m for m in new.nodes) for n in untouched) and len(untouched) == 30
    naive: list[SweepStats] = []
    assert rules.apply(graph, worklist=False, stats=naive).python() == new.python()
    assert len(naive[1].visited) == 31


def test_non_converging_rules_raise_naming_them() -> None:
    rules = RewriteRules("test-flip-flop", max_sweeps=6)
    minus_one = Var("c", const=True, where=lambda v: v.shape == ())

    @rules.rule(Pat("neg", Var("x")))
    def neg_to_mul(m: Match, rw: Rewriter) -> Value:
        return rw.op("mul", m["x"], rw.const(torch.tensor(-1.0), "minus_one"))

    @rules.rule(Pat("mul", Var("x"), minus_one))
    def mul_to_neg(m: Match, rw: Rewriter) -> Value | None:
        return rw.op("neg", m["x"]) if float(m.const("c")) == -1.0 else None

    g = _graph(lambda rw, x: [rw.op("neg", x)])
    with pytest.raises(PassError, match=r"rule set 'test-flip-flop' did not converge in 6 "
                                        r"sweeps.*(neg_to_mul.*mul_to_neg|mul_to_neg.*neg_to_mul)"):
        rules.apply(g)
    with pytest.raises(PassError, match="did not converge in 3 sweeps"):
        rules.apply(g, max_sweeps=3)


def test_unknown_op_names_fail_when_the_pattern_is_built() -> None:
    with pytest.raises(AccelValueError, match=r"Pat: unknown IR op 'linaer'; did you mean "
                                              r"'linear'"):
        Pat("linaer", Var("x"))
    with pytest.raises(AccelValueError, match=r"unknown IR op 'dvi'; did you mean 'div'"):
        Pat({"mul", "dvi"}, Var("x"), Var("y"))
    with pytest.raises(AccelValueError, match=r"op 'softmax' has no attribute 'dims'"):
        Pat("softmax", Var("x"), attrs={"dims": 0})


def _rule_sets() -> dict[str, RewriteRules]:
    """The rule set of every pass of the default pipeline written with rules."""
    found = {}
    for step in parse_pipeline("default"):
        rules = getattr(sys.modules[get_pass(step.name).fn.__module__], "rules", None)
        if isinstance(rules, RewriteRules):
            found[step.name] = rules
    return found


def _all_rules(sets: dict[str, RewriteRules]) -> RewriteRules:
    """One rule set holding every rule of ``sets`` (more interactions than any one pass)."""
    combined = RewriteRules("test-all-rules")
    for rules in sets.values():
        for r in rules.rules:
            combined.rule(r.pattern)(r.fn)
    return combined


def _same_both_ways(rules: RewriteRules, graph: Graph) -> None:
    counts: dict[str, int] = {}
    naive_counts: dict[str, int] = {}
    fast = rules.apply(graph, counts=counts)
    naive = rules.apply(graph, counts=naive_counts, worklist=False)
    assert fast.python() == naive.python(), f"{rules.name} on {graph.name}"
    assert counts == naive_counts and (fast is graph) == (naive is graph)


@pytest.mark.parametrize("model_name", ["resnet_small_test", "repvgg_small_test",
                                        "mobileone_small_test", "vit_small_test",
                                        "bert_small_test"])
def test_worklist_gives_the_naive_fixpoint_on_builtin_models(model_name: str) -> None:
    sets = _rule_sets()
    assert {"remove-noops", "fold-bn", "fold-scale", "fold-linear"} <= set(sets)
    model, inputs = get_model(model_name)
    graph = capture(model, inputs)
    _same_both_ways(_all_rules(sets), graph)
    for step in parse_pipeline("default"):  # each rule set where the default pipeline runs it
        if step.name in sets:
            _same_both_ways(sets[step.name], graph)
        graph = get_pass(step.name).fn(graph, PassContext(), **step.options)


def test_worklist_gives_the_naive_fixpoint_over_many_sweeps() -> None:
    """Chains that collapse over several sweeps, with rewrites that conflict in a sweep."""

    def build(rw: Rewriter, x: Value) -> list[Value]:
        t = rw.op("reshape", x, shape=(2, 2))
        outs = []
        for i in range(40):
            t = rw.op("permute", t, dims=(1, 0))
            if i % 3 == 0:
                t = rw.op("cast", rw.op("reshape", t, shape=(2, 2)), dtype=torch.float32)
            if i % 7 == 0:
                t = rw.op("add", rw.op("mul", t, rw.const(torch.ones(()), "one")),
                          rw.const(torch.zeros(2), "zero"))
            if i % 10 == 9:
                outs.append(rw.op("neg", rw.op("neg", t)))
        return [*outs, rw.op("reshape", t, shape=(4,))]

    graph = _graph(build)
    stats: list[SweepStats] = []
    _same_both_ways(_all_rules(_rule_sets()), graph)
    _all_rules(_rule_sets()).apply(graph, stats=stats)
    assert len(stats) > 3
