"""ONNX lowerings of the quantized ops (accel/ir/ops/quant.py), in standard ops only.

* ``linear_int8_static``: QDQ — QuantizeLinear/DequantizeLinear on the activation (per
  tensor) and DequantizeLinear with per-channel ``axis`` on the int8 weight, then MatMul;
  onnxruntime's QDQ optimizer turns the pattern into an integer matmul.
* ``linear_int8_dynamic``: ``act=per-tensor`` (asymmetric) is DynamicQuantizeLinear,
  MatMulInteger, Cast, Mul(s_x·s_w), Add(bias) — the pattern onnxruntime fuses into its
  DynamicQuantizeMatMul kernel. Per token (or symmetric): scales (and zero points) from
  ReduceMin/ReduceMax, an int8 x int8 ``MatMulInteger`` and the float dequantization
  ``acc·(s_x ⊗ s_w) + bias`` (not fused by onnxruntime: several times slower).
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
_I8 = 3  # onnx.TensorProto.INT8


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
    x_zp = b.const(np.int8(node.attrs["x_zero_point"]), f"{node.name}_x_zp")
    xq = b.add("QuantizeLinear", [inputs[0], x_scale, x_zp])
    xd = b.add("DequantizeLinear", [xq, x_scale, x_zp])
    w_t = b.const(w_q.t().contiguous(), f"{node.name}_wq_t")
    w_zp = b.const(torch.zeros(w_q.shape[0], dtype=torch.int8), f"{node.name}_w_zp")
    wd = b.add("DequantizeLinear", [w_t, b.const(w_scale.float(), f"{node.name}_w_scale"), w_zp],
               axis=1)
    return [_add_bias(b, b.add("MatMul", [xd, wd]), inputs)]


def _dynamic_quantize_matmul(b: OnnxBuilder, node: Node, inputs: list[str],
                             w_q: torch.Tensor, w_scale: torch.Tensor) -> list[str]:
    """Per-tensor asymmetric: the DynamicQuantizeLinear·MatMulInteger·Cast·Mul(·Add) chain
    that onnxruntime's ``quantize_dynamic`` emits and its optimizer fuses."""
    xq, x_scale, x_zp = b.add("DynamicQuantizeLinear", [inputs[0]], n_outputs=3)
    w_t = b.const(w_q.t().contiguous(), f"{node.name}_wq_t")
    acc = b.add("Cast", [b.add("MatMulInteger", [xq, w_t, x_zp])], to=_F32)
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
    if node.attrs["symmetric"]:
        amax = _reduce_last(b, "ReduceMax", b.add("Abs", [x]), per_token)
        scale = b.add("Div", [b.add("Max", [amax, b.scalar(1e-8, torch.float32, "eps")]),
                              b.scalar(127.0, torch.float32, "q127")])
        q = b.add("Round", [b.add("Div", [x, scale])])
        zp = None
    else:
        lo = b.add("Min", [_reduce_last(b, "ReduceMin", x, per_token), zero])
        hi = b.add("Max", [_reduce_last(b, "ReduceMax", x, per_token), zero])
        span = b.add("Max", [b.add("Sub", [hi, lo]), b.scalar(1e-8, torch.float32, "eps")])
        scale = b.add("Div", [span, b.scalar(255.0, torch.float32, "q255")])
        zp = b.add("Round", [b.add("Sub", [b.scalar(-128.0, torch.float32, "m128"),
                                           b.add("Div", [lo, scale])])])
        q = b.add("Add", [b.add("Round", [b.add("Div", [x, scale])]), zp])
    q = b.add("Clip", [q, b.scalar(-128.0, torch.float32, "m128"),
                       b.scalar(127.0, torch.float32, "q127")])
    xq = b.add("Cast", [q], to=_I8)
    acc = b.add("Cast", [b.add("MatMulInteger", [xq, b.const(w_q.t().contiguous(),
                                                               f"{node.name}_wq_t")])], to=_F32)
    if zp is not None:  # (xq - zp) @ w.T = acc - zp * rowsum(w)
        w_sum = b.const(w_q.sum(dim=1, dtype=torch.int32).float(), f"{node.name}_w_sum")
        acc = b.add("Sub", [acc, b.add("Mul", [zp, w_sum])])
    # acc·s_w first, then ·s_x: onnxruntime's MatMulIntegerToFloat fusion assumes a scalar
    # activation scale in Cast·Mul(scale)·Add(bias) after MatMulInteger, wrong for per-token.
    acc = b.add("Mul", [acc, b.const(w_scale.float(), f"{node.name}_w_scale")])
    return [_add_bias(b, b.add("Mul", [acc, scale]), inputs)]


@onnx_lowering("linear_weight_only")
def lower_linear_weight_only(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Dequantized weight (Cast·Mul per group of input channels), MatMul."""
    w_q = _const_input(b, node, 1, "quantized weight")
    scales = _const_input(b, node, 2, "weight scales").float()
    n, k = w_q.shape
    scales = scales.reshape(n, -1)
    groups = scales.shape[1]
    w_g = b.const(w_q.reshape(n, groups, k // groups), f"{node.name}_wq_groups")
    deq = b.add("Mul", [b.add("Cast", [w_g], to=_F32),
                        b.const(scales.unsqueeze(2), f"{node.name}_w_scales")])
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
