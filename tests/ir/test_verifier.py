"""The verifier catches each invariant violation in graphs built directly (bypassing the
Rewriter, which would refuse to build them)."""

from __future__ import annotations

from types import MappingProxyType

import pytest
import torch

from accel.errors import GraphError
from accel.ir.graph import Graph, Node, Value
from accel.ir.types import TensorType
from accel.ir.verifier import verify

F4 = TensorType((4,), torch.float32)


def _node(op: str, inputs: tuple, outputs: tuple, name: str, **attrs: object) -> Node:
    return Node(op, inputs, MappingProxyType(attrs), outputs, name)


def test_valid_graph_passes(mlp: Graph) -> None:
    mlp.verify()


def test_duplicate_value_name() -> None:
    x, y = Value("x", F4), Value("x", F4)
    g = Graph([x], [y], [_node("neg", (x,), (y,), "n")], {})
    with pytest.raises(GraphError, match="value name 'x' is defined twice"):
        g.verify()


def test_duplicate_node_name() -> None:
    x, a, b = Value("x", F4), Value("a", F4), Value("b", F4)
    g = Graph([x], [b], [_node("neg", (x,), (a,), "n"), _node("neg", (a,), (b,), "n")], {})
    with pytest.raises(GraphError, match="node n .*used twice"):
        g.verify()


def test_unknown_op() -> None:
    x, y = Value("x", F4), Value("y", F4)
    g = Graph([x], [y], [_node("frobnicate", (x,), (y,), "n")], {})
    with pytest.raises(GraphError, match="unknown IR op 'frobnicate'"):
        g.verify()


def test_wrong_arity() -> None:
    x, y = Value("x", F4), Value("y", F4)
    g = Graph([x], [y], [_node("add", (x,), (y,), "n")], {})
    with pytest.raises(GraphError, match=r"op 'add' \(node n\) takes inputs"):
        g.verify()


def test_bad_attributes() -> None:
    x, y = Value("x", F4), Value("y", F4)
    g = Graph([x], [y], [_node("softmax", (x,), (y,), "n", dim=0, axis=1)], {})
    with pytest.raises(GraphError, match=r"unknown attribute\(s\) \['axis'\]"):
        g.verify()
    g = Graph([x], [y], [_node("softmax", (x,), (y,), "n")], {})
    with pytest.raises(GraphError, match="missing attribute 'dim'"):
        g.verify()
    g = Graph([x], [y], [_node("softmax", (x,), (y,), "n", dim="0")], {})
    with pytest.raises(GraphError, match="attribute 'dim' must be int, got str"):
        g.verify()


def test_use_before_definition() -> None:
    x, a, b = Value("x", F4), Value("a", F4), Value("b", F4)
    nodes = [_node("neg", (a,), (b,), "second"), _node("neg", (x,), (a,), "first")]
    with pytest.raises(GraphError, match="node second .*input %a is used before it is defined"):
        Graph([x], [b], nodes, {}).verify()


def test_undefined_output() -> None:
    x, ghost = Value("x", F4), Value("ghost", F4)
    with pytest.raises(GraphError, match="graph output %ghost is never defined"):
        Graph([x], [ghost], [], {}).verify()


def test_constant_type_mismatch() -> None:
    c = Value("c", F4)
    with pytest.raises(GraphError, match="constant %c is typed f32\\[4\\] but holds f32\\[3\\]"):
        Graph([], [c], [], {c: torch.zeros(3)}).verify()


def test_output_type_mismatch() -> None:
    x, y = Value("x", F4), Value("y", TensorType((4,), torch.float16))
    g = Graph([x], [y], [_node("neg", (x,), (y,), "n")], {})
    with pytest.raises(GraphError, match=r"outputs typed \['f16\[4\]'\] but the op infers "
                                         r"\['f32\[4\]'\]"):
        g.verify()
    verify(g, check_types=False)  # structure only: no type inference
