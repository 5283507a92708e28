"""ONNX lowerings of the quantized ops (accel/ir/ops/quant.py), in standard ops only.

Integer matmuls always take **u8 activations** (the IR's int8 value plus 128, its zero point
plus 128: the same numbers): onnxruntime's u8 x s8 kernel is its fast one, while its s8 x s8
``MatMulInteger`` falls to a reference loop about 25x slower. The weights are stored as the
builder's ``int8_weights`` says: ``s8`` (u8 x s8: fastest, exact only with VNNI or off x86:
elsewhere MLAS sums pairs of products in saturating int16) or ``u8`` (the int8 weight plus
128 with zero point 128: the u8 x u8 kernel, exact on every host). Either way the result is
the IR reference's integer arithmetic exactly.

* ``linear_int8_static``: QDQ — QuantizeLinear/DequantizeLinear on the activation (per
  tensor) and DequantizeLinear with per-channel ``axis`` on the weight, then MatMul;
  onnxruntime's QDQ optimizer turns the pattern into an integer matmul.
* ``linear_int8_dynamic``: ``act=per-tensor`` (asymmetric) is DynamicQuantizeLinear,
  MatMulInteger, Cast, Mul(s_x·s_w), Add(bias) — the pattern onnxruntime fuses into its
  DynamicQuantizeMatMul kernel. Per token (or symmetric): scales (and zero points) from
  ReduceMin/ReduceMax, a u8 ``MatMulInteger``, the zero points corrected with the weight's
  column sums, and the float dequantization ``acc·(s_x ⊗ s_w) + bias``.
* ``linear_weight_only``: the weight dequantized by Cast·Mul on groups, then MatMul (not
  DequantizeLinear: onnxruntime rewrites DQ(weight)·MatMul into a kernel that also quantizes
  the activations, which a weight-only op must not do).
* ``quantize_per_channel`` / ``dequantize_per_channel``: QuantizeLinear / DequantizeLinear.
"""

from __future__ import annotations

import numpy as np
import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.registry import onnx_lowering
from accel.errors import ExportError
from accel.ir.graph import Node

_F32 = 1  # onnx.TensorProto.FLOAT
_U8 = 2  # onnx.TensorProto.UINT8
_I8 = 3  # onnx.TensorProto.INT8


def _weight(b: OnnxBuilder, node: Node, w_q: torch.Tensor) -> tuple[str, str, torch.Tensor]:
    """The ``[K, N]`` weight for an integer matmul in the builder's form, its zero point, and
    the int8 values it stands for (for column sums)."""
    w_t = w_q.t().contiguous()
    if b.int8_weights == "u8":
        stored = (w_t.to(torch.int16) + 128).to(torch.uint8)
        return (b.const(stored, f"{node.name}_wq_t"), b.const(np.uint8(128), "w_zp_u8"), w_t)
    return b.const(w_t, f"{node.name}_wq_t"), b.const(np.int8(0), "w_zp_s8"), w_t


def _const_input(b: OnnxBuilder, node: Node, index: int, what: str) -> torch.Tensor:
    t = b.constant(node.inputs[index])
    if t is None:
        raise ExportError(f"node {node.name} ({node.op}): the {what} must be a constant to "
                          "export to ONNX")
    return t


def _reduce_last(b: OnnxBuilder, op_type: str, x: str, per_token: bool = True) -> str:
    """``op_type`` (ReduceMin/ReduceMax) over the last axis keeping it (or over all axes
    when not ``per_token``); axes as an input from opset 18, an attribute before."""
    if not per_token:
        return b.add(op_type, [x], keepdims=0)
    if b.opset >= 18:
        return b.add(op_type, [x, b.const_i64([-1], "axes_last")], keepdims=1)
    return b.add(op_type, [x], axes=[-1], keepdims=1)


def _add_bias(b: OnnxBuilder, y: str, inputs: list[str]) -> str:
    return b.add("Add", [y, inputs[3]]) if len(inputs) > 3 and inputs[3] else y


@onnx_lowering("linear_int8_static")
def lower_linear_int8_static(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """QDQ: Q/DQ activation (per tensor), DQ weight (per channel, axis=1 of w.T), MatMul."""
    w_q = _const_input(b, node, 1, "int8 weight")
    w_scale = _const_input(b, node, 2, "weight scale")
    x_scale = b.const(np.float32(node.attrs["x_scale"]), f"{node.name}_x_scale")
    # u8 activation: the int8 value + 128 (clamp bounds shift alike), zero point + 128
    x_zp = b.const(np.uint8(node.attrs["x_zero_point"] + 128), f"{node.name}_x_zp")
    xq = b.add("QuantizeLinear", [inputs[0], x_scale, x_zp])
    xd = b.add("DequantizeLinear", [xq, x_scale, x_zp])
    w, _, _ = _weight(b, node, w_q)
    zp_type = torch.uint8 if b.int8_weights == "u8" else torch.int8
    w_zp = b.const(torch.full((w_q.shape[0],), 128 if zp_type == torch.uint8 else 0,
                              dtype=zp_type), f"{node.name}_w_zp")
    wd = b.add("DequantizeLinear", [w, b.const(w_scale.float(), f"{node.name}_w_scale"), w_zp],
               axis=1)
    return [_add_bias(b, b.add("MatMul", [xd, wd]), inputs)]


def _dynamic_quantize_matmul(b: OnnxBuilder, node: Node, inputs: list[str],
                             w_q: torch.Tensor, w_scale: torch.Tensor) -> list[str]:
    """Per-tensor asymmetric: the DynamicQuantizeLinear·MatMulInteger·Cast·Mul(·Add) chain
    that onnxruntime's ``quantize_dynamic`` emits and its optimizer fuses."""
    xq, x_scale, x_zp = b.add("DynamicQuantizeLinear", [inputs[0]], n_outputs=3)
    w, w_zp, _ = _weight(b, node, w_q)
    acc = b.add("Cast", [b.add("MatMulInteger", [xq, w, x_zp, w_zp])], to=_F32)
    scale = b.add("Mul", [x_scale, b.const(w_scale.float(), f"{node.name}_w_scale")])
    return [_add_bias(b, b.add("Mul", [acc, scale]), inputs)]


@onnx_lowering("linear_int8_dynamic")
def lower_linear_int8_dynamic(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Dynamic activation quantization, MatMulInteger, float dequantization."""
    w_q = _const_input(b, node, 1, "int8 weight")
    w_scale = _const_input(b, node, 2, "weight scale")
    per_token = node.attrs.get("act", "per-token") == "per-token"
    if not per_token and not node.attrs["symmetric"]:
        return _dynamic_quantize_matmul(b, node, inputs, w_q, w_scale)
    x = inputs[0]
    zero = b.scalar(0.0, torch.float32, "zero")
    f32 = torch.float32
    if node.attrs["symmetric"]:
        amax = _reduce_last(b, "ReduceMax", b.add("Abs", [x]), per_token)
        scale = b.add("Div", [b.add("Max", [amax, b.scalar(1e-8, f32, "eps")]),
                              b.scalar(127.0, f32, "q127")])
        # u8 = int8 value + 128: clip to the IR's [-127, 127], shifted
        q = b.add("Add", [b.add("Round", [b.add("Div", [x, scale])]), b.scalar(128.0, f32, "p128")])
        q = b.add("Clip", [q, b.scalar(1.0, f32, "one"), b.scalar(255.0, f32, "q255")])
        zp = b.scalar(128.0, f32, "p128")
    else:
        lo = b.add("Min", [_reduce_last(b, "ReduceMin", x, per_token), zero])
        hi = b.add("Max", [_reduce_last(b, "ReduceMax", x, per_token), zero])
        span = b.add("Max", [b.add("Sub", [hi, lo]), b.scalar(1e-8, f32, "eps")])
        scale = b.add("Div", [span, b.scalar(255.0, f32, "q255")])
        # the IR's zero point round(-128 - lo/s) plus 128 (-128 is whole: round commutes)
        zp = b.add("Round", [b.add("Neg", [b.add("Div", [lo, scale])])])
        q = b.add("Add", [b.add("Round", [b.add("Div", [x, scale])]), zp])
        q = b.add("Clip", [q, zero, b.scalar(255.0, f32, "q255")])
    xq = b.add("Cast", [q], to=_U8)
    w, w_zp, w_int = _weight(b, node, w_q)
    acc = b.add("Cast", [b.add("MatMulInteger", [xq, w, b.const(np.uint8(0), "x_zp0"), w_zp])],
                to=_F32)
    # (xq - zp) @ w = acc - zp * colsum(w): exact in float for |acc| < 2^24
    w_sum = b.const(w_int.sum(dim=0, dtype=torch.int32).float(), f"{node.name}_w_sum")
    acc = b.add("Sub", [acc, b.add("Mul", [zp, w_sum])])
    # acc·s_w first, then ·s_x: onnxruntime's MatMulIntegerToFloat fusion assumes a scalar
    # activation scale in Cast·Mul(scale)·Add(bias) after MatMulInteger, wrong for per-token.
    acc = b.add("Mul", [acc, b.const(w_scale.float(), f"{node.name}_w_scale")])
    return [_add_bias(b, b.add("Mul", [acc, scale]), inputs)]


@onnx_lowering("linear_weight_only")
def lower_linear_weight_only(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Dequantized weight (Cast·Mul per group of input channels, a Sub of the zero points
    before the Mul when there are any), MatMul."""
    w_q = _const_input(b, node, 1, "quantized weight")
    scales = _const_input(b, node, 2, "weight scales").float()
    n, k = w_q.shape
    scales = scales.reshape(n, -1)
    groups = scales.shape[1]
    w_g = b.const(w_q.reshape(n, groups, k // groups), f"{node.name}_wq_groups")
    w_f = b.add("Cast", [w_g], to=_F32)
    if len(node.inputs) > 4 and node.inputs[4] is not None:
        zeros = _const_input(b, node, 4, "weight zero points").float().reshape(n, groups, 1)
        w_f = b.add("Sub", [w_f, b.const(zeros, f"{node.name}_w_zeros")])
    deq = b.add("Mul", [w_f, b.const(scales.unsqueeze(2), f"{node.name}_w_scales")])
    w = b.add("Transpose", [b.add("Reshape", [deq, b.const_i64([n, k], "w_shape")])],
              perm=[1, 0])
    return [_add_bias(b, b.add("MatMul", [inputs[0], w]), inputs)]


def _zero_point_i8(b: OnnxBuilder, node: Node, inputs: list[str]) -> str:
    zp = b.constant(node.inputs[2])
    if zp is not None:
        return b.const(zp.to(torch.int8), f"{node.name}_zp")
    return b.add("Cast", [inputs[2]], to=_I8)


@onnx_lowering("quantize_per_channel")
def lower_quantize_per_channel(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """QuantizeLinear with per-channel ``axis`` (int8 output)."""
    scale = b.add("Cast", [inputs[1]], to=_F32)
    return [b.add("QuantizeLinear", [inputs[0], scale, _zero_point_i8(b, node, inputs)],
                  axis=node.attrs["axis"])]


@onnx_lowering("dequantize_per_channel")
def lower_dequantize_per_channel(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """DequantizeLinear with per-channel ``axis``."""
    scale = b.add("Cast", [inputs[1]], to=_F32)
    return [b.add("DequantizeLinear", [inputs[0], scale, _zero_point_i8(b, node, inputs)],
                  axis=node.attrs["axis"])]
