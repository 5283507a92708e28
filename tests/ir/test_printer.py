"""The printer: readable Python that runs and reproduces the reference outputs."""

from __future__ import annotations

import torch

from accel.frontend import capture
from accel.ir.graph import Graph, Rewriter
from accel.ir.ops.fallback import TensorArg
from accel.ir.printer import exec_printed, format_attr
from accel.ir.types import TensorType
from accel.models import get_model
from accel.testing import run_graph


def _run_printed(graph: Graph, inputs: tuple) -> tuple:
    fn = exec_printed(graph.python())
    consts = {v.name: t for v, t in graph.constants.items()}
    with torch.no_grad():
        return fn(*inputs, **consts)


def test_printed_source_is_readable(mlp: Graph) -> None:
    src = mlp.python()
    assert src.splitlines()[0].startswith("# mlp: 3 nodes, 3 constants, 37 parameters")
    assert 'def mlp(\n    x: "f32[2,8]",\n    *,\n    fc_weight: "f32[4,8]",' in src
    assert "    fc = ops.linear(x, fc_weight, fc_bias)  # f32[2,4]" in src
    assert src.rstrip().endswith("return (scale,)")
    assert str(mlp) == src


def test_printed_hand_graph_reproduces_outputs(mlp: Graph) -> None:
    x = torch.randn(2, 8)
    (out,) = _run_printed(mlp, (x,))
    torch.testing.assert_close(out, run_graph(mlp, (x,))[0])


def test_printed_attrs_round_trip() -> None:
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 3), torch.float32))
    a = rw.op("cast", rw.op("clamp", x, min=float("-inf"), max=0.5), dtype=torch.float16)
    b = rw.op("permute", rw.op("reshape", x, shape=(3, 2)), dims=(1, 0))
    c = rw.op("pad", x, pads=(1, 1))
    fb = rw.op("aten", x, target=torch.ops.aten.flip.default, args=(TensorArg(0), (1,)))
    rw.set_outputs([a, b, c, fb])
    g = rw.finish("attrs")
    src = g.python()
    assert "dtype=torch.float16" in src and "min=float('-inf')" in src
    assert "target=torch.ops.aten.flip.default" in src and "TensorArg(0)" in src
    x = torch.randn(2, 3)
    for got, ref in zip(_run_printed(g, (x,)), run_graph(g, (x,)), strict=True):
        torch.testing.assert_close(got, ref)


def test_format_attr() -> None:
    assert format_attr((1,)) == "(1,)"
    assert format_attr(float("nan")) == "float('nan')"
    assert format_attr(torch.int8) == "torch.int8"


def test_printed_captured_model_reproduces_outputs() -> None:
    model, inputs = get_model("resnet_small_test", batch_size=1)
    g = capture(model, inputs)
    outs = _run_printed(g, inputs)
    for got, ref in zip(outs, run_graph(g, inputs), strict=True):
        torch.testing.assert_close(got, ref)
    with torch.no_grad():
        torch.testing.assert_close(outs[0], model(*inputs), atol=1e-5, rtol=1e-5)
