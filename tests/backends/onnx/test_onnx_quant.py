"""ONNX lowerings of the quantized ops: one-node graphs and a quantized model, run in
onnxruntime and compared with the reference implementations."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from accel.backends.onnx.exporter import graph_to_onnx
from accel.backends.onnx.ort import int8_weights_for
from accel.frontend import capture
from accel.host import host
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


HOST_FORM = int8_weights_for(host())
"""The int8 weight form the cpu target picks on this host (``s8`` only where exact)."""
FORMS = sorted({"u8", HOST_FORM})


def _one_node(op: str, x: torch.Tensor, consts: list, int8_weights: str = "u8",
              **attrs: object) -> list[np.ndarray]:
    rw = Rewriter()
    xv = rw.add_input("x", TensorType.of(x))
    node = rw.node(op, xv, *[rw.const(c, f"c{i}") if c is not None else None
                             for i, c in enumerate(consts)], **attrs)
    rw.set_outputs(node.outputs)
    graph = rw.finish()
    (out,) = _run(graph_to_onnx(graph, int8_weights=int8_weights), [x])
    ref = node.opdef.ref(x, *consts, **node.attrs)
    return out, ref.numpy()


torch.manual_seed(0)
X = torch.randn(2, 5, 32)
W = torch.randn(24, 32)
B = torch.randn(24)
WQ, WS = quantize_per_channel(W)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("act", ["per-token", "per-tensor"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_linear_int8_dynamic(symmetric: bool, act: str, form: str) -> None:
    out, ref = _one_node("linear_int8_dynamic", X, [WQ, WS, B], form, symmetric=symmetric,
                         act=act)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def _saturating() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations that quantize to u8 255 against weights of -127: each pair of products
    is -64770, past int16 (what x86 MLAS's u8 x s8 kernel sums pairs in without VNNI)."""
    k = 64
    x = torch.cat([torch.ones(3, k), -torch.ones(1, k)])  # per tensor: 1.0 -> 255, -1.0 -> 0
    w_q = torch.full((8, k), -127, dtype=torch.int8)
    w_q[1::2] = 127
    return x, w_q, torch.full((8,), 0.01)


@pytest.mark.parametrize("profile", ["host", "avx2,fma"])
@pytest.mark.parametrize("op, attrs", [
    ("linear_int8_dynamic", {"act": "per-tensor"}), ("linear_int8_dynamic", {}),
    ("linear_int8_static", {"x_scale": 2 / 255, "x_zero_point": 0})])
def test_int8_is_exact_where_u8s8_saturates(op: str, attrs: dict, profile: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The form the cpu target picks for a host (the real one, and an AVX2-only profile
    forced) reproduces the integer reference exactly on the saturating inputs."""
    if profile != "host":
        monkeypatch.setenv("ACCEL_HOST_ISA", profile)
    form = int8_weights_for(host())
    assert form == ("u8" if profile != "host" else HOST_FORM)
    x, w_q, w_s = _saturating()
    out, ref = _one_node(op, x, [w_q, w_s], form, **attrs)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_the_s8_form_saturates_exactly_where_the_profile_says() -> None:
    """Reproduces onnxruntime's saturation: the s8 form on these inputs is exact with VNNI
    (or off x86) and wrong without it, which is why such hosts get the u8 form."""
    x, w_q, w_s = _saturating()
    out, ref = _one_node("linear_int8_dynamic", x, [w_q, w_s], "s8", act="per-tensor")
    err = float(np.abs(out - ref).max())
    if host().u8s8_exact:
        assert err <= 1e-5, err
    else:
        assert err > 0.1, f"expected u8 x s8 saturation on this host ({host().describe()})"


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
    ort.InferenceSession(graph_to_onnx(rw.finish(), int8_weights=HOST_FORM).SerializeToString(),
                         so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert "DynamicQuantizeMatMul" in ops and "MatMulInteger" not in ops


@pytest.mark.parametrize("form", FORMS)
def test_linear_int8_static_qdq(form: str) -> None:
    out, ref = _one_node("linear_int8_static", X, [WQ, WS, B], form, x_scale=0.03,
                         x_zero_point=5)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_linear_weight_only() -> None:
    out, ref = _one_node("linear_weight_only", X, [WQ, WS, None], bits=8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    wq4, s4 = quantize_grouped(W, 4, 8)
    out, ref = _one_node("linear_weight_only", X, [wq4, s4, B], bits=4, group_size=8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_linear_weight_only_with_zero_points() -> None:
    """The asymmetric int4 grid: (q - z)·s per group, Cast·Sub·Mul in ONNX."""
    wq4, s4 = quantize_grouped(W, 4, 8)
    zeros = torch.randint(-8, 8, s4.shape, generator=torch.Generator().manual_seed(3)
                          ).to(torch.int8)
    out, ref = _one_node("linear_weight_only", X, [wq4, s4, B, zeros], bits=4, group_size=8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    shifted = (wq4.float() - zeros.repeat_interleave(8, dim=1).float()) * \
        s4.repeat_interleave(8, dim=1)
    np.testing.assert_allclose(ref, (X @ shifted.t() + B).numpy(), rtol=1e-4, atol=1e-4)


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
    onnx_model = graph_to_onnx(graph, int8_weights=HOST_FORM)
    ops = {n.op_type for n in onnx_model.graph.node}
    assert ("MatMulInteger" in ops) if mode == "int8-dynamic" else {"QuantizeLinear",
                                                                    "DequantizeLinear"} <= ops
    outs = _run(onnx_model, list(inputs))
    ref = run_graph(graph, inputs)
    for o, r in zip(outs, ref, strict=True):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-3, atol=1e-3)
