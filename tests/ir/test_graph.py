"""The immutable Graph and its Rewriter: queries, replace, annotate, ordering, dead nodes."""

from __future__ import annotations

import pytest
import torch

from accel.errors import GraphError
from accel.ir.graph import Graph, Rewriter
from accel.ir.types import TensorType
from accel.testing import run_graph


def test_queries(mlp: Graph) -> None:
    fc, act, scale = mlp.node("fc"), mlp.node("act"), mlp.node("scale")
    assert [n.name for n in mlp] == ["fc", "act", "scale"]  # the dead exp was dropped
    assert mlp.producer(act.output) is act
    assert mlp.producer(mlp.inputs[0]) is None
    assert mlp.users(fc.output) == [act]
    assert mlp.num_uses(scale.output) == 1  # the graph output counts as a use
    assert mlp.is_const(fc.inputs[1]) and not mlp.is_const(mlp.inputs[0])
    assert mlp.const(fc.inputs[2]).shape == (4,)
    with pytest.raises(GraphError, match="not a constant"):
        mlp.const(mlp.inputs[0])
    with pytest.raises(GraphError, match="no node named 'nope'"):
        mlp.node("nope")
    assert mlp.find("relu") == [act]
    assert mlp.op_counts() == {"linear": 1, "relu": 1, "mul": 1}
    assert mlp.num_params() == 4 * 8 + 4 + 1
    assert mlp.fallbacks() == []


def test_replace_rewires_uses_and_outputs(mlp: Graph) -> None:
    rw = Rewriter(mlp, pass_name="test-pass")
    act = mlp.node("act")
    sig = rw.op("sigmoid", act.inputs[0])
    rw.replace(act.output, sig)
    new = rw.finish()
    assert [n.op for n in new] == ["linear", "sigmoid", "mul"]
    assert new.node("sigmoid").meta["pass"] == "test-pass"
    x = torch.randn(2, 8)
    w, b = mlp.const(mlp.node("fc").inputs[1]), mlp.const(mlp.node("fc").inputs[2])
    (out,) = run_graph(new, (x,))
    torch.testing.assert_close(out, torch.sigmoid(x @ w.T + b) * 2)


def test_replace_output_value_directly(mlp: Graph) -> None:
    rw = mlp.rewriter()
    rw.replace(mlp.outputs[0], mlp.node("act").output)
    new = rw.finish()
    assert [n.op for n in new] == ["linear", "relu"]
    assert new.outputs[0] is mlp.node("act").output


def test_replace_checks_types(mlp: Graph) -> None:
    rw = Rewriter(mlp, pass_name="shrink")
    small = rw.op("sum", mlp.node("act").output, dims=(1,))
    with pytest.raises(GraphError, match="types differ") as e:
        rw.replace(mlp.outputs[0], small)
    assert "shrink" in str(e.value)


def test_rewriter_is_pure(mlp: Graph) -> None:
    before_nodes, before_src = mlp.nodes, mlp.python()
    rw = mlp.rewriter()
    rw.replace(mlp.node("act").output, rw.op("tanh", mlp.node("fc").output))
    rw.annotate(mlp.inputs[0], scale=0.5)
    rw.finish()
    assert mlp.nodes is before_nodes and mlp.python() == before_src
    assert mlp.inputs[0].annotations == {}
    with pytest.raises(TypeError):
        mlp.constants[mlp.inputs[0]] = torch.zeros(1)  # read-only mapping


def test_annotate_substitutes_everywhere(mlp: Graph) -> None:
    rw = mlp.rewriter()
    act = mlp.node("act").output
    new_act = rw.annotate(act, token_sizes=(1, 2))
    w = mlp.node("fc").inputs[1]
    new_w = rw.annotate(w, quant="int8")
    g = rw.finish()
    assert new_act.annotations["token_sizes"] == (1, 2)
    assert g.node("act").output is new_act
    assert g.node("scale").inputs[0] is new_act
    assert g.node("fc").inputs[1] is new_w and g.is_const(new_w)
    assert "token_sizes=(1, 2)" in g.python()
    g.verify()


def test_finish_sorts_topologically_and_drops_dead() -> None:
    rw = Rewriter()
    x = rw.add_input("x", TensorType((3,), torch.float32))
    unused = rw.const(torch.ones(3), "unused")
    a = rw.op("neg", x)
    b = rw.op("exp", a)
    rw.op("sin", b)  # dead
    rw.set_outputs([b])
    g = rw.finish()
    rw2 = g.rewriter()  # new nodes feed a node that comes earlier in the list
    c = rw2.op("neg", rw2.op("abs", g.inputs[0]))
    rw2.replace(g.node("neg").output, c)
    g2 = rw2.finish()
    assert [n.op for n in g2] == ["abs", "neg", "exp"]
    assert unused not in g.constants and len(g) == 2
    x = torch.randn(3)
    torch.testing.assert_close(run_graph(g2, (x,))[0], torch.exp(-x.abs()))


def test_remove_and_undefined_value_error(mlp: Graph) -> None:
    rw = Rewriter(mlp, pass_name="bad-remove")
    rw.remove(mlp.node("act"))
    with pytest.raises(GraphError, match="used but never defined after pass bad-remove"):
        rw.finish()


def test_cycle_detected() -> None:
    rw = Rewriter()
    x = rw.add_input("x", TensorType((3,), torch.float32))
    a = rw.op("neg", x)
    b = rw.op("exp", a)
    rw.replace(x, b, check_type=True)  # a reads b which reads a
    rw.set_outputs([b])
    with pytest.raises(GraphError, match="cycle|cyclic"):
        rw.finish()


def test_fresh_names_are_unique(mlp: Graph) -> None:
    rw = mlp.rewriter()
    names = {rw.fresh_name("fc") for _ in range(3)} | {rw.fresh_name("0 bad-name")}
    assert len(names) == 4 and "fc" not in names
    assert all(n.isidentifier() for n in names)


def test_multi_output_node_and_node_output_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from accel.ir.ops import OpDef, OpKind, registry

    # registered only for this test, so the global op set (and docs/ops.md) stays clean
    monkeypatch.setitem(registry._REGISTRY, "test_split2", OpDef(
        "test_split2", ("x",), lambda x: tuple(x.chunk(2)), OpKind.SHAPE, num_outputs=2))
    rw = Rewriter()
    x = rw.add_input("x", TensorType((4,), torch.float32))
    n = rw.node("test_split2", x)
    assert len(n.outputs) == 2 and n.outputs[0].shape == (2,)
    with pytest.raises(GraphError, match="has 2 outputs"):
        _ = n.output
    rw.set_outputs([rw.op("add", *n.outputs)])
    g = rw.finish()
    torch.testing.assert_close(run_graph(g, (torch.arange(4.0),))[0], torch.tensor([2.0, 4.0]))


def test_flops_linear_conv_attention() -> None:
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 8), torch.float32))
    lin = rw.op("linear", x, rw.const(torch.randn(4, 8), "w"))
    img = rw.add_input("img", TensorType((1, 3, 8, 8), torch.float32))
    conv = rw.op("conv", img, rw.const(torch.randn(6, 3, 3, 3), "k"), stride=(1, 1),
                 padding=(1, 1), dilation=(1, 1))
    q = rw.add_input("q", TensorType((2, 4, 16, 8), torch.float32))
    att = rw.op("attention", q, q, q)
    rw.set_outputs([lin, conv, att])
    g = rw.finish()
    assert g.node("linear").flops() == 2 * 2 * 4 * 8
    assert g.node("conv").flops() == 2 * (6 * 8 * 8) * 3 * 9
    assert g.node("attention").flops() == 8 * (4 * 16 * 16 * 8 + 5 * 16 * 16)
    assert g.flops() == sum(n.flops() for n in g)
    assert g.node("linear").bytes() == 4 * (2 * 8 + 4 * 8 + 2 * 4)


def test_networkx_export(mlp: Graph) -> None:
    nx = pytest.importorskip("networkx")
    dg = mlp.to_networkx()
    assert set(dg.nodes) == {"fc", "act", "scale"}
    assert dg.nodes["fc"]["op"] == "linear"
    assert set(dg.edges) == {("fc", "act"), ("act", "scale")}
    assert dg.edges["fc", "act"]["value"] == mlp.node("fc").output.name
    assert nx.is_directed_acyclic_graph(dg)
