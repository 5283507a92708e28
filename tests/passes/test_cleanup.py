"""Before/after graph tests for the lossless cleanups: dce, cse, fold-constants, remove-noops."""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Rewriter
from accel.ir.types import TensorType
from accel.passes import PassContext, parse_pipeline, run_pipeline
from accel.testing import check_pass, run_graph


def _run(graph: Graph, spec: str) -> tuple[Graph, list]:
    return run_pipeline(graph, parse_pipeline(spec), PassContext(debug=True))


def _same_outputs(a: Graph, b: Graph, *inputs: torch.Tensor) -> None:
    for x, y in zip(run_graph(a, inputs), run_graph(b, inputs), strict=True):
        torch.testing.assert_close(x, y)


def _hand_graph() -> Graph:
    """Duplicated subexpressions, constant-only arithmetic and identity ops."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 4), torch.float32))
    w1, w2 = rw.const(torch.ones(4)), rw.const(torch.ones(4))  # equal constants
    a = rw.op("mul", x, w1)                       # x * 1 (no-op)
    b = rw.op("mul", x, w2)                       # duplicate of a after constant CSE
    c = rw.op("add", rw.op("exp", rw.const(torch.zeros(4))), rw.const(torch.ones(4)))  # const 2
    r = rw.op("permute", rw.op("permute", rw.op("add", a, b), dims=(1, 0)), dims=(1, 0))
    y = rw.op("reshape", rw.op("mul", r, c), shape=(2, 4))  # identity reshape
    rw.set_outputs([y])
    return rw.finish()


def test_dce_drops_unreachable_nodes_and_constants() -> None:
    g = _hand_graph()
    keep = g.node("exp").output  # only the constant branch stays live
    pruned = Graph(g.inputs, [keep], g.nodes, g.constants, g.name)
    new, (rec,) = _run(pruned, "dce")
    assert len(pruned) > len(new) and rec.changed and "dead node" in rec.notes[0]
    assert set(new.constants) <= set(pruned.constants) and len(new.constants) < len(g.constants)
    same, (rec2,) = _run(new, "dce")
    assert same is new and not rec2.changed


def test_cse_merges_equal_constants_and_nodes() -> None:
    g = _hand_graph()
    new, (rec,) = _run(g, "cse")
    assert g.op_counts()["mul"] == 3 and new.op_counts()["mul"] == 2
    assert len(new.constants) == 2  # ones(4) x3 -> 1, zeros(4)
    assert "merged 1 node(s), 2 constant(s)" in rec.notes[0]
    _same_outputs(g, new, torch.randn(2, 4))


def test_cse_keeps_random_draws_apart() -> None:
    from accel.ir.ops.fallback import TensorArg

    rw = Rewriter()
    x = rw.add_input("x", TensorType((3,), torch.float32))
    draws = [rw.op("aten", x, target=torch.ops.aten.randn_like.default, args=(TensorArg(0),))
             for _ in range(2)]
    rw.set_outputs(draws)
    g = rw.finish()
    new, (rec,) = _run(g, "cse")
    assert new.op_counts()["aten"] == 2 and not rec.changed
    a, b = run_graph(new, (torch.zeros(3),))
    assert not torch.equal(a, b)


def test_fold_constants_evaluates_constant_subgraphs() -> None:
    g = _hand_graph()
    new, (rec,) = _run(g, "fold-constants")
    assert "exp" in g.op_counts() and "exp" not in new.op_counts()
    assert len(new) == len(g) - 2 and "folded 2 node(s)" in rec.notes[0]
    two = new.const(new.node("mul_2").inputs[1])
    torch.testing.assert_close(two, torch.full((4,), 2.0))
    _same_outputs(g, new, torch.randn(2, 4))


def test_fold_constants_respects_max_elements() -> None:
    rw = Rewriter()
    big = rw.op("expand", rw.const(torch.ones(1, 1)), shape=(64, 64))
    x = rw.add_input("x", TensorType((64, 64), torch.float32))
    rw.set_outputs([rw.op("add", x, big)])
    g = rw.finish()
    kept, _ = _run(g, "fold-constants{max_elements=100}")
    assert kept is g
    folded, _ = _run(g, "fold-constants")
    assert folded.op_counts() == {"add": 1}


def test_remove_noops_rules() -> None:
    g = _hand_graph()
    new, (rec,) = _run(g, "remove-noops")
    counts = new.op_counts()
    assert g.op_counts()["permute"] == 2 and "permute" not in counts
    assert "reshape" not in counts and counts["mul"] == 1  # x * 1 twice removed, * c kept
    assert "identity_view x1" in rec.notes[0] and "permute_chain x1" in rec.notes[0]
    _same_outputs(g, new, torch.randn(2, 4))


def test_cleanup_preset_on_a_captured_model() -> None:
    class Redundant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x).reshape(2, 8) * 1.0 + 0.0
            z = torch.relu(self.fc(x))  # same linear again (CSE)
            scale = torch.ones(8).sum() / 8  # constant subgraph (folds)
            return (y + z).permute(1, 0).permute(1, 0) * scale

    result = check_pass(Redundant().eval(), (torch.randn(2, 8),), "cleanup", atol=1e-6)
    before, after = result.before.op_counts(), result.after.op_counts()
    assert before["linear"] == 2 and after["linear"] == 1
    assert after == {"linear": 1, "relu": 1, "add": 1}  # x*1, +0, permutes, scale gone
    assert result.changed and result.max_abs_error == 0.0
