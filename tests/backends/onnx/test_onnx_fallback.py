"""``aten`` fallback nodes exported through torch's own exporter (backends/onnx/torchlib.py):
checked against the ATen op in onnxruntime before they are spliced, with constants as inputs
and several nodes in one graph; a wrong export is refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from test_onnx_ops import run_onnx

from accel.backends.onnx import torchlib
from accel.backends.onnx.exporter import graph_to_onnx
from accel.errors import ExportError
from accel.ir.graph import Graph, Rewriter
from accel.ir.interpreter import interpret
from accel.ir.ops.fallback import TensorArg
from accel.ir.types import TensorType


def graph_with(target: object, n_inputs: int, *, kwargs: tuple = (), const: bool = False
               ) -> Graph:
    """relu(aten_op(x0, x1, ...)), the last input a constant when ``const``."""
    rw = Rewriter()
    xs = [rw.add_input(f"x{i}", TensorType((2, 3), torch.float32)) for i in range(n_inputs)]
    if const:
        xs[-1] = rw.const(torch.linspace(-1, 1, 6).reshape(2, 3), "c")
    y = rw.op("aten", *xs, name="tail_op", target=target,
              args=tuple(TensorArg(i) for i in range(n_inputs)), kwargs=kwargs)
    rw.set_outputs([rw.op("relu", y)])
    return rw.finish()


@pytest.mark.parametrize("const", [False, True])
def test_fallback_is_spliced_as_standard_ops_and_exact(const: bool) -> None:
    graph = graph_with(torch.ops.aten.addcmul.default, 3, kwargs=(("value", 0.5),), const=const)
    proto = graph_to_onnx(graph)
    assert all(n.domain == "" for n in proto.graph.node)
    assert {"Mul", "Add"} <= {n.op_type for n in proto.graph.node}
    onnx.checker.check_model(proto)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 3, generator=g) for _ in graph.inputs]
    want = interpret(graph, inputs)[0]
    np.testing.assert_allclose(run_onnx(proto, inputs)[0], want.numpy(), rtol=1e-6, atol=1e-6)


def test_two_fallback_nodes_get_distinct_names() -> None:
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 3), torch.float32))
    a = rw.op("aten", x, x, target=torch.ops.aten.logaddexp.default,
              args=(TensorArg(0), TensorArg(1)))
    b = rw.op("aten", a, x, target=torch.ops.aten.logaddexp.default,
              args=(TensorArg(0), TensorArg(1)))
    rw.set_outputs([b])
    graph = rw.finish()
    x0 = torch.randn(2, 3)
    got = run_onnx(graph_to_onnx(graph), [x0])[0]
    np.testing.assert_allclose(got, torch.logaddexp(torch.logaddexp(x0, x0), x0).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_op_torch_cannot_export_is_a_clear_error() -> None:
    graph = graph_with(torch.ops.aten.erfinv.default, 1)
    with pytest.raises(ExportError, match=r"tail_op is an 'aten' fallback \(aten\.erfinv.*torch"
                                          r"\.onnx's exporter could not give it an ONNX form"):
        graph_to_onnx(graph)


def test_fallback_below_opset_18_is_a_clear_error() -> None:
    """torch.onnx writes opset 18 or newer: at 17 a fallback names the node and the fix."""
    graph = graph_with(torch.ops.aten.addcmul.default, 3, kwargs=(("value", 0.5),))
    with pytest.raises(ExportError, match=r"tail_op .*opset 18 or newer.*export at opset=18"):
        graph_to_onnx(graph, opset=17)


def test_a_wrong_export_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """If torch's export computed something else than the ATen op, accel must not use it."""
    wrong = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["in0", "in1"], ["out"])], "wrong",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [2, 3])
         for n in ("in0", "in1")],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [2, 3])]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    monkeypatch.setattr(torchlib, "_CACHE", {})
    monkeypatch.setattr(torchlib, "_export_one", lambda node, opset: wrong)
    graph = graph_with(torch.ops.aten.logaddexp.default, 2)
    with pytest.raises(ExportError, match="differs from the ATen op on a check input"):
        graph_to_onnx(graph)
