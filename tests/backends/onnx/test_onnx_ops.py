"""Every IR op's ONNX lowering: a one-node graph exported, run in onnxruntime, compared with
the op's ATen reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from accel.backends.onnx.exporter import graph_to_onnx
from accel.backends.onnx.registry import has_lowering
from accel.ir import Rewriter, TensorType, all_ops, get_op

CORE_MODULES = {"elementwise", "reduction", "nn", "shape"}
g = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def pos(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=g) + 0.5


def ints(high: int, *shape: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=g)


def const(t: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Mark an input as a graph constant (weights)."""
    return ("const", t)


X = (2, 3, 4)
UNARY_INPUT = {"log": pos, "sqrt": pos, "rsqrt": pos, "reciprocal": pos,
               "logical_not": lambda *s: rand(*s) > 0, "log2": pos, "log10": pos,
               "log1p": lambda *s: pos(*s) - 0.9, "acosh": lambda *s: pos(*s) + 0.5,
               "asin": lambda *s: torch.rand(*s, generator=g) * 1.8 - 0.9,
               "acos": lambda *s: torch.rand(*s, generator=g) * 1.8 - 0.9,
               "atanh": lambda *s: torch.rand(*s, generator=g) * 1.8 - 0.9,
               "expm1": lambda *s: rand(*s) * 1e-3}
# op -> list of (inputs, attrs); an input is a tensor (runtime input) or const(tensor)
CASES: dict[str, list[tuple[list, dict]]] = {
    "pow": [([pos(*X), rand(*X)], {}), ([rand(*X), const(torch.tensor(2.0))], {})],
    "div": [([rand(*X), pos(*X)], {}), ([rand(*X) * 4, pos(*X)], {"rounding_mode": "floor"}),
            ([rand(*X) * 4, pos(*X)], {"rounding_mode": "trunc"}),
            ([ints(9, *X) - 4, ints(3, *X) + 1], {"rounding_mode": "floor"}),
            ([ints(9, *X) - 4, ints(3, *X) + 1], {"rounding_mode": "trunc"})],
    "add": [([rand(*X), rand(4)], {}), ([rand(*X), ints(5, *X)], {})],
    "mul": [([rand(*X), const(torch.tensor(0.5))], {})],
    "logical_and": [([rand(*X) > 0, rand(*X) > 0], {})],
    "logical_or": [([rand(*X) > 0, rand(*X) > 0], {})],
    "gelu": [([rand(*X)], {}), ([rand(*X)], {"approximate": "tanh"})],
    "clamp": [([rand(*X)], {"min": -0.5, "max": 0.5}), ([rand(*X)], {"min": 0.0}),
              ([rand(*X)], {"max": 0.1})],
    "leaky_relu": [([rand(*X)], {"negative_slope": 0.2})],
    "cast": [([rand(*X) * 3], {"dtype": torch.int64}), ([ints(4, *X)], {"dtype": torch.float32}),
             ([rand(*X)], {"dtype": torch.bool})],
    "where": [([rand(*X) > 0, rand(*X), rand(4)], {})],
    "sum": [([rand(*X)], {"dims": (1,)}), ([rand(*X)], {"dims": (0, 2), "keepdim": True}),
            ([rand(*X)], {"dims": ()}), ([rand(*X) > 0], {"dims": (-1,)})],
    "mean": [([rand(*X)], {"dims": (-1,), "keepdim": True}), ([rand(*X)], {"dims": (1, 2)})],
    "amax": [([rand(*X)], {"dims": (1,)})],
    "amin": [([rand(*X)], {"dims": (0, 2), "keepdim": True})],
    "var": [([rand(*X)], {"dims": (-1,)}), ([rand(*X)], {"dims": (1,), "correction": 0,
                                                         "keepdim": True})],
    "argmax": [([rand(*X)], {"dim": 1}), ([rand(*X)], {"dim": -1, "keepdim": True})],
    "cumsum": [([rand(*X)], {"dim": 1})],
    "argmin": [([rand(*X)], {"dim": 1}), ([rand(*X)], {"dim": -1, "keepdim": True})],
    "prod": [([rand(*X)], {"dims": (1,)}), ([rand(*X)], {"dims": (0, 2), "keepdim": True}),
             ([rand(*X)], {"dims": ()}), ([ints(3, *X)], {"dims": (2,)}),
             ([rand(*X) > 0], {"dims": (1,)})],
    "scatter": [([rand(*X), ints(3, 2, 2, 4), rand(2, 2, 4)], {"dim": 1}),
                ([rand(*X), ints(4, 2, 3, 3), rand(2, 3, 3)], {"dim": 2, "reduce": "sum"}),
                ([rand(*X), ints(2, 1, 3, 4), rand(1, 3, 4)], {"dim": 0, "reduce": "prod"})],
    "index_put": [([rand(5, 3), rand(3), torch.tensor([4, -1, 0])], {}),
                  ([rand(5, 3), rand(1), torch.tensor([1, 1, 2])], {"accumulate": True}),
                  ([rand(4, 3, 2), rand(2, 2), torch.tensor([0, 3]), torch.tensor([2, 1])], {})],
    "softmax": [([rand(*X)], {"dim": -1}), ([rand(*X)], {"dim": 1})],
    "log_softmax": [([rand(*X)], {"dim": -1})],
    "layer_norm": [([rand(*X), const(pos(4)), const(rand(4))], {"normalized_shape": (4,)}),
                   ([rand(*X)], {"normalized_shape": (3, 4), "eps": 1e-6})],
    "rms_norm": [([rand(*X), const(pos(4))], {"normalized_shape": (4,), "eps": 1e-6}),
                 ([rand(*X)], {"normalized_shape": (4,)})],
    "group_norm": [([rand(2, 6, 3, 3), const(pos(6)), const(rand(6))], {"groups": 3}),
                   ([rand(2, 4, 5)], {"groups": 2})],
    "batch_norm": [([rand(2, 3, 4, 4), const(rand(3)), const(pos(3)), const(pos(3)),
                     const(rand(3))], {}),
                   ([rand(2, 3, 5), const(rand(3)), const(pos(3))], {"eps": 1e-3})],
    "linear": [([rand(2, 5), const(rand(3, 5)), const(rand(3))], {}),
               ([rand(2, 4, 5), const(rand(3, 5)), const(rand(3))], {}),
               ([rand(2, 4, 5), rand(3, 5)], {}),
               ([ints(9, 2, 5) - 4, const(ints(5, 3, 5)), const(ints(3, 3))], {})],
    # integer inputs: onnxruntime has no integer Relu/Floor/Gemm kernels
    "relu": [([rand(*X)], {}), ([ints(9, *X) - 4], {})],
    "floor": [([rand(*X) * 2], {}), ([ints(9, *X) - 4], {})],
    "matmul": [([rand(2, 3, 4), rand(2, 4, 5)], {}), ([rand(2, 3, 4), const(rand(4, 6))], {})],
    "conv": [([rand(2, 3, 8, 8), const(rand(4, 3, 3, 3)), const(rand(4))],
              {"stride": (2, 2), "padding": (1, 1), "dilation": (1, 1)}),
             ([rand(2, 4, 8, 8), const(rand(4, 1, 3, 3))],
              {"stride": (1, 1), "padding": (2, 2), "dilation": (2, 2), "groups": 4}),
             ([rand(2, 3, 10), const(rand(4, 3, 3))],
              {"stride": (1,), "padding": (1,), "dilation": (1,)})],
    "attention": [([rand(2, 2, 5, 4), rand(2, 2, 5, 4), rand(2, 2, 5, 4)], {}),
                  ([rand(2, 2, 5, 4), rand(2, 2, 6, 4), rand(2, 2, 6, 4), rand(2, 1, 5, 6)],
                   {"scale": 0.3}),
                  ([rand(2, 2, 5, 4), rand(2, 2, 5, 4), rand(2, 2, 5, 4)], {"causal": True}),
                  # causal with L != S: top-left aligned, as SDPA's is_causal (L < S, L = 1, L > S)
                  ([rand(4, 3, 8), rand(4, 6, 8), rand(4, 6, 8)], {"causal": True}),
                  ([rand(2, 2, 1, 4), rand(2, 2, 6, 4), rand(2, 2, 6, 4)], {"causal": True}),
                  ([rand(2, 2, 6, 4), rand(2, 2, 3, 4), rand(2, 2, 3, 4)], {"causal": True}),
                  # a row the mask removes entirely gives 0, as SDPA (Softmax alone gives NaN)
                  ([rand(2, 2, 4, 4), rand(2, 2, 4, 4), rand(2, 2, 4, 4),
                    torch.ones(2, 1, 4, 4, dtype=torch.bool).index_fill(2, torch.tensor([1]),
                                                                        False)], {}),
                  ([rand(2, 2, 5, 4), rand(2, 2, 5, 4), rand(2, 2, 5, 4),
                    torch.ones(2, 1, 1, 5, dtype=torch.bool).index_fill(3, torch.tensor([4]),
                                                                        False)], {})],
    "max_pool2d_with_indices": [([rand(2, 3, 8, 8)], {"kernel": (3, 3), "stride": (2, 2),
                                                      "padding": (1, 1)}),
                                ([rand(1, 2, 5, 7)], {"kernel": (2, 3), "stride": (2, 2),
                                                      "ceil_mode": True})],
    "conv_transpose": [([rand(1, 3, 4, 4), const(rand(3, 2, 3, 3)), const(rand(2))],
                        {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1),
                         "dilation": (1, 1)}),
                       ([rand(2, 4, 5), const(rand(4, 1, 3))],
                        {"stride": (1,), "padding": (0,), "output_padding": (0,),
                         "dilation": (2,), "groups": 4})],
    "einsum": [([rand(2, 3, 4), rand(2, 4, 5)], {"equation": "bij,bjk->bik"}),
               ([rand(3, 3)], {"equation": "ii->"}), ([rand(2, 3), rand(3)],
                                                      {"equation": "...j,j"})],
    "grid_sample": [([rand(2, 3, 5, 5), torch.rand(2, 4, 6, 2, generator=g) * 2.2 - 1.1], {}),
                    ([rand(1, 2, 4, 4), torch.rand(1, 3, 3, 2, generator=g) * 2 - 1],
                     {"mode": "nearest", "padding_mode": "border", "align_corners": True}),
                    ([rand(1, 2, 4, 4), torch.rand(1, 3, 3, 2, generator=g) * 2.4 - 1.2],
                     {"padding_mode": "reflection"})],
    "topk": [([rand(*X)], {"k": 2, "dim": 1}), ([rand(*X)], {"k": 4, "dim": -1,
                                                             "largest": False})],
    "max_pool2d": [([rand(2, 3, 8, 8)], {"kernel": (3, 3), "stride": (2, 2),
                                         "padding": (1, 1)})],
    "avg_pool2d": [([rand(2, 3, 8, 8)], {"kernel": (2, 2), "stride": (2, 2)}),
                   ([rand(2, 3, 8, 8)], {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1),
                                         "count_include_pad": False}),
                   ([rand(2, 3, 8, 8)], {"kernel": (2, 2), "stride": (2, 2),
                                         "divisor_override": 3})],
    "adaptive_avg_pool2d": [([rand(2, 3, 6, 6)], {"output_size": (1, 1)}),
                            ([rand(2, 3, 6, 6)], {"output_size": (2, 3)}),
                            ([rand(2, 3, 8, 8)], {"output_size": (5, 7)})],
    "embedding": [([const(rand(10, 4)), ints(10, 2, 5)], {})],
    "reshape": [([rand(*X)], {"shape": (2, 12)}), ([rand(*X)], {"shape": (6, 2, 2)})],
    "permute": [([rand(*X)], {"dims": (2, 0, 1)})],
    "expand": [([rand(1, 3, 1)], {"shape": (2, 3, 4)}), ([rand(4)], {"shape": (2, 3, 4)})],
    "slice": [([rand(2, 6, 4)], {"dim": 1, "start": 1, "end": 5, "step": 2}),
              ([rand(2, 6, 4)], {"dim": -1, "start": 0, "end": 2**62}),
              ([rand(2, 6, 4)], {"dim": 1, "start": -3, "end": -1})],
    "select": [([rand(*X)], {"dim": 1, "index": 2}), ([rand(*X)], {"dim": -1, "index": -1})],
    "concat": [([rand(*X), rand(2, 2, 4)], {"dim": 1}), ([rand(*X), ints(5, *X)], {"dim": 0})],
    "pad": [([rand(*X)], {"pads": (1, 2)}), ([rand(2, 3, 4, 4)], {"pads": (1, 1, 0, 2),
                                                                   "value": 1.5}),
            ([rand(*X)], {"pads": (-1, 1)})],
    "index_select": [([rand(*X), ints(3, 5)], {"dim": 1}),
                     ([rand(*X), const(torch.arange(3))], {"dim": 1})],
    "gather": [([rand(*X), ints(4, 2, 3, 2)], {"dim": 2})],
    "size_tensor": [([], {"value": 7}), ([], {"value": 3, "dtype": torch.float32})],
    "arange": [([], {"end": 5}), ([], {"start": 2, "end": 11, "step": 3,
                                       "dtype": torch.float32})],
}


def _unary_case(op: str) -> list[tuple[list, dict]]:
    return [([UNARY_INPUT.get(op, lambda *s: rand(*s) * 2)(*X)], {})]


def _binary_case(op: str) -> list[tuple[list, dict]]:
    a, b = rand(*X), rand(*X)
    b[0, 0] = a[0, 0]  # equal entries for eq/ne/le/ge
    return [([a, b], {}), ([a, rand(3, 1)], {})]


def cases_for(op: str) -> list[tuple[list, dict]]:
    """Test cases of ``op``: the table's, or a generic one for plain unary/binary ops."""
    if op in CASES:
        return CASES[op]
    opdef = get_op(op)
    if not opdef.attrs and opdef.inputs == ("x",):
        return _unary_case(op)
    if not opdef.attrs and opdef.inputs == ("a", "b"):
        return _binary_case(op)
    return []


def one_node_graph(op: str, inputs: list, attrs: dict):  # noqa: ANN201
    """A graph applying ``op`` once; returns (graph, runtime tensors, all tensors)."""
    rw = Rewriter()
    values, runtime, tensors = [], [], []
    for i, item in enumerate(inputs):
        if isinstance(item, tuple):
            values.append(rw.const(item[1], f"c{i}"))
            tensors.append(item[1])
        else:
            values.append(rw.add_input(f"x{i}", TensorType.of(item)))
            runtime.append(item)
            tensors.append(item)
    node = rw.node(op, *values, **attrs)
    rw.set_outputs(node.outputs)
    return rw.finish(), runtime, tensors, node


def run_onnx(model: onnx.ModelProto, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    """Run an ONNX model in onnxruntime (CPU, one thread)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}
    return sess.run(None, feeds)


def _module_of(op: str) -> str:
    return get_op(op).ref.__module__.rsplit(".", 1)[-1]


@pytest.mark.parametrize("op", sorted(all_ops()))
def test_onnx_lowering_matches_reference(op: str) -> None:
    if op == "aten":
        pytest.skip("the aten fallback has no ONNX form (tested in tests/test_export.py)")
    cases = cases_for(op)
    if not cases:
        assert _module_of(op) not in CORE_MODULES, f"core op '{op}' needs a case in CASES"
        pytest.skip(f"op '{op}' ({_module_of(op)} family): numerics tested by that family's "
                    "tests/backends/onnx/test_onnx_<family>.py")
    for inputs, attrs in cases:
        graph, runtime, tensors, node = one_node_graph(op, inputs, attrs)
        model = graph_to_onnx(graph)
        onnx.checker.check_model(model, full_check=True)
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        outs = run_onnx(model, runtime)
        refs = get_op(op).ref(*tensors, **node.attrs)
        refs = refs if isinstance(refs, tuple) else (refs,)
        assert len(outs) == len(refs) == len(node.outputs), (op, attrs)
        for out, ref in zip(outs, refs, strict=True):
            assert out.dtype == ref.numpy().dtype, (op, attrs, out.dtype, ref.dtype)
            assert out.shape == tuple(ref.shape), (op, attrs)
            np.testing.assert_allclose(out, ref.numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=f"{op} {attrs}")


def _shares_memory(out: object, tensors: list) -> bool:
    outs = out if isinstance(out, tuple | list) else (out,)
    ptrs = {t.untyped_storage().data_ptr() for t in tensors
            if isinstance(t, torch.Tensor) and t.numel()}
    return any(isinstance(o, torch.Tensor) and o.numel()
               and o.untyped_storage().data_ptr() in ptrs for o in outs)


@pytest.mark.parametrize("op", sorted(all_ops()))
def test_ops_whose_reference_returns_input_memory_say_so(op: str) -> None:
    """An executor that reuses buffers across calls trusts ``may_alias``: an op whose
    reference hands back an input (or a view of one) must declare it."""
    cases = list(cases_for(op))
    if op == "cast":
        cases.append(([rand(*X)], {"dtype": torch.float32}))  # same dtype: returns x itself
    for inputs, attrs in cases:
        _, _, tensors, node = one_node_graph(op, inputs, attrs)
        if _shares_memory(get_op(op).ref(*tensors, **node.attrs), tensors):
            assert get_op(op).may_alias, f"{op} {attrs} returns input memory"


def test_every_registered_op_has_an_onnx_lowering() -> None:
    missing = sorted(op for op in all_ops() if op != "aten" and not has_lowering(op))
    assert not missing, (
        f"ops without ONNX lowering: {missing}; add @onnx_lowering functions in "
        "accel/backends/onnx/lowerings/<family>.py"
    )


def _symbolic_case(name: str):  # noqa: ANN202
    """A graph over x: f32[batch, seq, 4] (batch, seq symbolic) exercising one op's sizes."""
    rw = Rewriter()
    b, s = rw.add_symbol("batch", hint=2), rw.add_symbol("seq", hint=5)
    x = rw.add_input("x", TensorType((b, s, 4), torch.float32))
    if name == "reshape":
        y = rw.op("reshape", x, shape=(b, s * 4))
    elif name == "reshape_expr":
        y = rw.op("reshape", x, shape=(b * s, 4))
    elif name == "expand":
        y = rw.op("expand", rw.op("slice", x, dim=2, start=0, end=1, step=1), shape=(b, s, 3))
    elif name == "slice":
        y = rw.op("slice", x, dim=1, start=1, end=s, step=1)
    elif name == "slice_expr":
        y = rw.op("slice", x, dim=1, start=0, end=s - 1, step=1)
    elif name == "select":
        y = rw.op("select", x, dim=1, index=s - 1)
    elif name == "concat":
        y = rw.op("concat", x, x, dim=1)
    elif name == "arange":
        y = rw.op("add", rw.op("arange", end=s, dtype=torch.float32),
                  rw.op("sum", x, dims=(0, 2)))
    elif name == "var":
        y = rw.op("var", x, dims=(1,), correction=1)
    else:  # causal attention over a symbolic length
        q = rw.op("reshape", x, shape=(b, 1, s, 4))
        y = rw.op("attention", q, q, q, causal=True)
    rw.set_outputs([y])
    return rw.finish()


@pytest.mark.parametrize("name", ["reshape", "reshape_expr", "expand", "slice", "slice_expr",
                                  "select", "concat", "arange", "var", "attention"])
def test_symbolic_sizes_become_dynamic_axes(name: str) -> None:
    """Symbolic dims are the model's named dynamic axes; the sizes the graph derives from
    them are computed in the ONNX graph: one model, every size."""
    from accel.ir.interpreter import interpret

    graph = _symbolic_case(name)
    model = graph_to_onnx(graph)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == ["batch", "seq"]
    for b, s in [(2, 5), (3, 2), (1, 9)]:
        x = torch.randn(b, s, 4, generator=g)
        (out,) = run_onnx(model, [x])
        (ref,) = interpret(graph, [x])
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"{b}x{s}")
