"""Each Triton template's generated kernel, run under TRITON_INTERPRET=1 on CPU tensors,
against the ATen reference of the same graph (fp32, and fp16/bf16 where the interpreter
allows)."""

from __future__ import annotations

import pytest
import torch

from accel.backends.triton.kinds import BY_NAME, KINDS
from accel.backends.triton.partition import partition
from accel.ir.graph import Graph, Rewriter
from accel.ir.types import TensorType
from accel.targets import LowerContext, lower
from accel.testing import run_graph

TOL = {torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def _graph(build, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype) -> Graph:  # noqa: ANN001
    rw = Rewriter()
    xs = {k: rw.add_input(k, TensorType(s, dtype)) for k, s in shapes.items()}
    rw.set_outputs(build(rw, **xs))
    return rw.finish("test")


def _check(graph: Graph, dtype: torch.dtype, kinds: set, **inputs_scale: float
           ) -> LowerContext:
    inputs = tuple(torch.randn(v.shape).to(dtype) * inputs_scale.get(v.name, 1.0)
                   for v in graph.inputs)
    assert {g.kind for g in partition(graph, KINDS)} == kinds
    ctx = LowerContext(options={"interpret": True})
    out = lower(graph, "cuda", ctx).run(inputs)
    ref = run_graph(graph, inputs)
    for o, r in zip(out, ref, strict=True):
        assert o.dtype == r.dtype and o.shape == r.shape
        torch.testing.assert_close(o.float(), r.float(), atol=TOL[dtype], rtol=TOL[dtype])
    return ctx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pointwise_chain_with_broadcasting(dtype: torch.dtype) -> None:
    def build(rw, x, b, s):  # noqa: ANN001, ANN202
        y = rw.op("gelu", rw.op("add", x, b))
        return [rw.op("mul", rw.op("sigmoid", y), s)]

    g = _graph(build, {"x": (2, 3, 20), "b": (20,), "s": (2, 1, 1)}, dtype)
    _check(g, dtype, {BY_NAME["pointwise"]})


def test_pointwise_middle_dim_broadcast_and_unary_ops() -> None:
    def build(rw, x, c):  # noqa: ANN001, ANN202
        y = rw.op("clamp", rw.op("sub", x, c), min=-1.0, max=2.0)
        y = rw.op("tanh", rw.op("silu", y))
        return [rw.op("div", rw.op("exp", y), rw.op("add", rw.op("abs", x), rw.const(
            torch.tensor(1.0))))]

    g = _graph(build, {"x": (3, 5, 7), "c": (3, 1, 7)}, torch.float32)
    _check(g, torch.float32, {BY_NAME["pointwise"]})


@pytest.mark.parametrize("op", ["floor", "ceil", "trunc", "sign", "exp2", "log2", "log10",
                                "expm1", "log1p", "tan", "sinh", "cosh", "erfc"])
def test_pointwise_unary_math(op: str) -> None:
    def build(rw, x):  # noqa: ANN001, ANN202
        if op in ("log2", "log10", "log1p"):  # a positive argument
            x = rw.op("add", rw.op("abs", x), rw.const(torch.tensor(0.1)))
        return [rw.op(op, x)]

    g = _graph(build, {"x": (3, 17)}, torch.float32)
    _check(g, torch.float32, {BY_NAME["pointwise"]}, x=2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm", "sum", "mean"])
def test_reduction_last_dim(op: str, dtype: torch.dtype) -> None:
    def build(rw, x, r):  # noqa: ANN001, ANN202
        x = rw.op("add", x, r)  # prologue (single use)
        if op == "softmax":
            return [rw.op("mul", rw.op("softmax", x, dim=-1), r)]  # epilogue
        if op == "layer_norm":
            w, b = rw.const(torch.rand(24).to(dtype) + 0.5), rw.const(torch.randn(24).to(dtype))
            return [rw.op("layer_norm", x, w, b, normalized_shape=(24,), eps=1e-5)]
        if op == "rms_norm":
            w = rw.const(torch.rand(24).to(dtype) + 0.5)
            return [rw.op("rms_norm", x, w, normalized_shape=(24,), eps=1e-6)]
        return [rw.op(op, x, dims=(-1,), keepdim=op == "mean")]

    g = _graph(build, {"x": (2, 5, 24), "r": (2, 5, 24)}, dtype)
    _check(g, dtype, {BY_NAME["reduction"]})
    assert len(partition(g, KINDS)) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_linear_with_bias_activation_scale_residual(dtype: torch.dtype) -> None:
    w = torch.randn(40, 24).to(dtype) / 5
    b = torch.randn(40).to(dtype)
    g_scale = torch.rand(40).to(dtype)

    def build(rw, x, res):  # noqa: ANN001, ANN202
        y = rw.op("linear", x, rw.const(w, "w"), rw.const(b, "b"))
        y = rw.op("mul", rw.op("gelu", y, approximate="tanh"), rw.const(g_scale, "gamma"))
        return [rw.op("add", res, y)]

    g = _graph(build, {"x": (2, 19, 24), "res": (2, 19, 40)}, dtype)
    _check(g, dtype, {BY_NAME["matmul"]})
    assert len(partition(g, KINDS)) == 1


def test_batched_matmul_and_shared_rhs() -> None:
    def build(rw, a, b, w):  # noqa: ANN001, ANN202
        return [rw.op("relu", rw.op("matmul", a, b)), rw.op("matmul", a, w)]

    g = _graph(build, {"a": (3, 33, 20), "b": (3, 20, 17), "w": (20, 9)}, torch.float32)
    _check(g, torch.float32, {BY_NAME["matmul"]})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("bias_shape", "causal"), [
    (None, False), (None, True), ((2, 1, 1, 21), False), ((1, 3, 18, 21), True)])
def test_flash_attention(bias_shape: tuple[int, ...] | None, causal: bool,
                         dtype: torch.dtype) -> None:
    shapes = {"q": (2, 3, 18, 16), "k": (2, 3, 21, 16), "v": (2, 3, 21, 24)}
    if bias_shape is not None:
        shapes["bias"] = bias_shape

    def build(rw, q, k, v, bias=None):  # noqa: ANN001, ANN202
        ins = (q, k, v) if bias is None else (q, k, v, bias)
        return [rw.op("attention", *ins, scale=None, causal=causal)]

    g = _graph(build, shapes, dtype)
    _check(g, dtype, {BY_NAME["attention"]})


@pytest.mark.parametrize(("lq", "lk"), [(3, 6), (1, 6), (6, 6), (6, 3)])
def test_causal_attention_is_top_left_aligned_for_every_length(lq: int, lk: int) -> None:
    """SDPA's is_causal keeps ones(L, S).tril(): for L != S the mask is top-left aligned."""
    def build(rw, q, k, v):  # noqa: ANN001, ANN202
        return [rw.op("attention", q, k, v, scale=None, causal=True)]

    g = _graph(build, {"q": (2, 2, lq, 8), "k": (2, 2, lk, 8), "v": (2, 2, lk, 8)},
               torch.float32)
    _check(g, torch.float32, {BY_NAME["attention"]})


def test_fully_masked_attention_rows_give_zero() -> None:
    """A row whose bias is all -inf attends to nothing: SDPA returns 0 there, not NaN."""
    bias = torch.zeros(1, 1, 6, 5).index_fill(2, torch.tensor([0, 3]), float("-inf"))

    def build(rw, q, k, v):  # noqa: ANN001, ANN202
        return [rw.op("attention", q, k, v, rw.const(bias, "mask"), scale=None, causal=False)]

    g = _graph(build, {"q": (2, 2, 6, 8), "k": (2, 2, 5, 8), "v": (2, 2, 5, 8)}, torch.float32)
    _check(g, torch.float32, {BY_NAME["attention"]})


def test_attention_log_size_bias_matches_proportional_attention() -> None:
    """ToMe's proportional attention: bias = log(token size) broadcast over heads and rows."""
    sizes = torch.randint(1, 4, (2, 1, 1, 12)).float()

    def build(rw, q, k, v):  # noqa: ANN001, ANN202
        bias = rw.const(sizes.log(), "log_size")
        return [rw.op("attention", q, k, v, bias, scale=0.3, causal=False)]

    g = _graph(build, {"q": (2, 2, 12, 8), "k": (2, 2, 12, 8), "v": (2, 2, 12, 8)},
               torch.float32)
    _check(g, torch.float32, {BY_NAME["attention"]})


def test_emitted_source_is_dumped(tmp_path) -> None:  # noqa: ANN001
    def build(rw, x):  # noqa: ANN001, ANN202
        return [rw.op("relu", rw.op("neg", x))]

    g = _graph(build, {"x": (4, 4)}, torch.float32)
    ctx = LowerContext(options={"interpret": True}, dump_dir=tmp_path)
    lower(g, "cuda", ctx).run((torch.randn(4, 4),))
    (path,) = (tmp_path / "kernels").glob("*.py")
    text = path.read_text()
    assert "@triton.jit" in text and "tl.maximum" in text and "Fuses: neg=neg, relu=relu" in text


def test_symbolic_sizes_are_kernel_arguments_and_one_kernel_serves_every_size() -> None:
    """Pointwise with broadcasting, a softmax over a symbolic row, a matmul with a broadcast
    epilogue: the emitted kernels take the sizes as (unspecialized) arguments, and the one
    lowering matches the reference at sizes it never saw."""
    from accel.backends.triton.kernel import Device
    from accel.backends.triton.kinds import KINDS
    from accel.backends.triton.lower import build_kernel, lower_triton
    from accel.ir import Rewriter
    from accel.ir.interpreter import interpret
    from accel.ir.types import TensorType

    rw = Rewriter()
    b, s = rw.add_symbol("batch", hint=2), rw.add_symbol("seq", hint=5, hi=64)
    x = rw.add_input("x", TensorType((b, s, 8), torch.float32))
    bias = rw.add_input("bias", TensorType((b, 1, 8), torch.float32))
    y = rw.op("gelu", rw.op("add", x, bias))
    scores = rw.op("matmul", y, rw.op("permute", y, dims=(0, 2, 1)))  # [batch, seq, seq]
    probs = rw.op("softmax", rw.op("mul", scores, rw.const(torch.tensor(0.3), "k")), dim=-1)
    w = rw.const(torch.randn(16, 8), "w")
    rw.set_outputs([probs, rw.op("relu", rw.op("linear", y, w))])
    graph = rw.finish()
    device = Device(interpret=True)
    groups = partition(graph, KINDS, device)
    sources = [build_kernel(g, device).source.source for g in groups if g.kind.emit]
    assert sources and all("do_not_specialize" in src for src in sources), sources
    ex = lower_triton(graph, device)
    for bb, ss in [(2, 5), (3, 11), (1, 64)]:
        args = [torch.randn(bb, ss, 8), torch.randn(bb, 1, 8)]
        for got, want in zip(ex.run(args), interpret(graph, args), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
