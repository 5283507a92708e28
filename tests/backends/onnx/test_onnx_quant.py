"""ONNX lowerings of the quantized ops: one-node graphs and a quantized model, run in
onnxruntime and compared with the reference implementations."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from accel.backends.onnx.exporter import graph_to_onnx
from accel.frontend import capture
from accel.ir import Rewriter, TensorType
from accel.ir.ops.quant import quantize_grouped, quantize_per_channel
from accel.models import get_model
from accel.passes import PassContext, parse_pipeline, run_pipeline
from accel.testing import run_graph


def _run(model: onnx.ModelProto, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    onnx.checker.check_model(model, full_check=True)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}
    return sess.run(None, feeds)


def _one_node(op: str, x: torch.Tensor, consts: list, **attrs: object) -> list[np.ndarray]:
    rw = Rewriter()
    xv = rw.add_input("x", TensorType.of(x))
    node = rw.node(op, xv, *[rw.const(c, f"c{i}") if c is not None else None
                             for i, c in enumerate(consts)], **attrs)
    rw.set_outputs(node.outputs)
    graph = rw.finish()
    (out,) = _run(graph_to_onnx(graph), [x])
    ref = node.opdef.ref(x, *consts, **node.attrs)
    return out, ref.numpy()


torch.manual_seed(0)
X = torch.randn(2, 5, 32)
W = torch.randn(24, 32)
B = torch.randn(24)
WQ, WS = quantize_per_channel(W)


@pytest.mark.parametrize("act", ["per-token", "per-tensor"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_linear_int8_dynamic(symmetric: bool, act: str) -> None:
    out, ref = _one_node("linear_int8_dynamic", X, [WQ, WS, B], symmetric=symmetric, act=act)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_linear_int8_dynamic_per_tensor_fuses_to_dynamic_quantize_matmul(tmp_path) -> None:  # noqa: ANN001
    """DynamicQuantizeLinear·MatMulInteger·Cast·Mul·Add becomes onnxruntime's fused kernel
    (and matches the ATen reference, zero points included)."""
    x = X + 0.7  # skewed range: a nonzero zero point
    w_sum = WQ.sum(dim=1, dtype=torch.int32).float()
    out, ref = _one_node("linear_int8_dynamic", x, [WQ, WS, B, w_sum], act="per-tensor")
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    rw = Rewriter()
    xv = rw.add_input("x", TensorType.of(x))
    node = rw.node("linear_int8_dynamic", xv, rw.const(WQ, "wq"), rw.const(WS, "ws"),
                   rw.const(B, "b"), act="per-tensor")
    rw.set_outputs(node.outputs)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(graph_to_onnx(rw.finish()).SerializeToString(), so,
                         providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert "DynamicQuantizeMatMul" in ops and "MatMulInteger" not in ops


def test_linear_int8_static_qdq() -> None:
    out, ref = _one_node("linear_int8_static", X, [WQ, WS, B], x_scale=0.03, x_zero_point=5)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_linear_weight_only() -> None:
    out, ref = _one_node("linear_weight_only", X, [WQ, WS, None], bits=8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    wq4, s4 = quantize_grouped(W, 4, 8)
    out, ref = _one_node("linear_weight_only", X, [wq4, s4, B], bits=4, group_size=8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_quantize_dequantize_per_channel() -> None:
    x = torch.randn(4, 6)
    scale, zp = torch.rand(6) + 0.01, torch.randint(-3, 3, (6,))
    out, ref = _one_node("quantize_per_channel", x, [scale, zp], axis=1)
    np.testing.assert_array_equal(out, ref)
    q = torch.randint(-128, 127, (4, 6), dtype=torch.int8)
    out, ref = _one_node("dequantize_per_channel", q, [scale, zp], axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-6)


@pytest.mark.parametrize("mode", ["int8-dynamic", "int8-static"])
def test_quantized_bert_exports_and_runs(mode: str) -> None:
    model, inputs = get_model("bert_small_test")
    graph = capture(model, inputs)
    ctx = PassContext(example_inputs=inputs, calibration=[inputs])
    graph, _ = run_pipeline(graph, parse_pipeline(f"default,quantize{{mode={mode}}}"), ctx)
    onnx_model = graph_to_onnx(graph)
    ops = {n.op_type for n in onnx_model.graph.node}
    assert ("MatMulInteger" in ops) if mode == "int8-dynamic" else {"QuantizeLinear",
                                                                    "DequantizeLinear"} <= ops
    outs = _run(onnx_model, list(inputs))
    ref = run_graph(graph, inputs)
    for o, r in zip(outs, ref, strict=True):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-3, atol=1e-3)
