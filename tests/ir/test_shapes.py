"""Symbolic dims in the IR: types, inference on FakeTensors, printing, verification, and the
helpers executors use (compiled expressions, bounds)."""

from __future__ import annotations

import pytest
import sympy
import torch

from accel.errors import GraphError
from accel.ir import Rewriter, TensorType
from accel.ir.interpreter import interpret
from accel.ir.printer import exec_printed
from accel.ir.shapes import (
    SymbolInfo,
    at_hints,
    compile_exprs,
    evaluate,
    is_symbolic,
    symbol,
    upper_bound,
)


def _graph():  # noqa: ANN202
    rw = Rewriter()
    b, s = rw.add_symbol("batch", hint=2), rw.add_symbol("seq", hint=5, hi=64)
    x = rw.add_input("x", TensorType((b, s, 8), torch.float32))
    w = rw.const(torch.randn(16, 8), "w")
    y = rw.op("linear", x, w)  # f32[batch,seq,16]
    flat = rw.op("reshape", y, shape=(b * s, 16))
    cls = rw.op("expand", rw.const(torch.zeros(1, 1, 16), "cls"), shape=(b, 1, 16))
    cat = rw.op("concat", cls, y, dim=1)  # f32[batch,seq+1,16]
    last = rw.op("select", cat, dim=1, index=s)
    rw.set_outputs([rw.op("softmax", flat, dim=-1), cat, last])
    return rw.finish(), w


def test_types_carry_expressions_and_print_them() -> None:
    g, _ = _graph()
    flat, cat, last = (v.type for v in g.outputs)
    b, s = symbol("batch"), symbol("seq")
    assert flat.shape == (b * s, 16) and cat.shape == (b, s + 1, 16) and last.shape == (b, 16)
    assert str(flat) == "f32[batch*seq,16]" and str(cat) == "f32[batch,seq+1,16]"
    assert not flat.is_static and TensorType((2, 3), torch.float32).is_static
    assert g.symbols["seq"] == SymbolInfo("seq", 2, 64, 5)
    assert g.flops() == at_hints(g.flops(), g.symbols) > 0  # costs at the example sizes
    g.verify()


def test_printed_graph_runs_at_any_size() -> None:
    g, w = _graph()
    src = g.python()
    assert "batch = x.shape[0]  # batch in [2, inf]" in src and "shape=(batch*seq, 16)" in src
    fn = exec_printed(src)
    for b, s in [(2, 5), (3, 9)]:
        x = torch.randn(b, s, 8)
        got = fn(x, w=g.const(w), cls=torch.zeros(1, 1, 16))
        want = interpret(g, [x])
        for a, e in zip(got, want, strict=True):
            torch.testing.assert_close(a, e)
        assert got[1].shape == (b, s + 1, 16)


def test_inference_needs_the_size_to_be_known_raises() -> None:
    """A shape that only exists for one value of a symbol is an error naming the op."""
    rw = Rewriter()
    s = rw.add_symbol("seq", hint=5)
    x = rw.add_input("x", TensorType((s, 4), torch.float32))
    with pytest.raises(GraphError, match="op 'reshape'"):
        rw.op("reshape", x, shape=(5, 4))  # static 5: wrong for every other seq


def test_a_branching_fake_kernel_is_not_a_shape_dependency() -> None:
    """conv's fake kernel branches on the batch size (an algorithm choice): the output shape
    is the same either way, so inference accepts it."""
    rw = Rewriter()
    b = rw.add_symbol("batch", hint=2)
    x = rw.add_input("x", TensorType((b, 3, 8, 8), torch.float32))
    y = rw.op("conv", x, rw.const(torch.randn(4, 3, 3, 3), "w"), stride=(1, 1), padding=(1, 1),
              dilation=(1, 1), groups=1)
    assert str(y.type) == "f32[batch,4,8,8]"


def test_helpers() -> None:
    b, s = symbol("batch"), symbol("seq")
    table = {"batch": SymbolInfo("batch", 2, 8, 3), "seq": SymbolInfo("seq", 2, None, 4)}
    assert is_symbolic((1, (2, b))) and not is_symbolic((1, 2))
    assert evaluate((b * s, (s + 1, 3)), {b: 2, s: 7}) == (14, (8, 3))
    assert at_hints(b * s, table) == 12
    f = compile_exprs([b * s, (s + 1, 4)], ["batch", "seq"])
    assert f(2, 7) == (14, (8, 4))
    assert upper_bound(b * 4, table) == 32 and upper_bound(b * s, table) is None
    assert isinstance(evaluate(sympy.Integer(3), {}), int)
