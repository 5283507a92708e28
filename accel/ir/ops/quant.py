"""Quantized ops: int8 linears (dynamic and static activations), weight-only linears, and
per-channel (de)quantization.

Conventions: weights are symmetric per output channel, stored like ``linear`` weights
(``w_q: int8[N, K]``, ``w_scale: f32[N]``). int8 matmuls run on ``torch._int_mm`` (int8 x int8
-> int32) where the device supports the shape, else on an exact integer fallback; the int32
accumulator is dequantized as ``acc * (s_x ⊗ s_w) + bias``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.errors import AccelValueError
from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op
from accel.ir.types import TensorType

QMIN, QMAX = -127, 127
"""Symmetric int8 range used for weights and dynamic activations."""


def int_matmul(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """int8 ``a[M, K] @ b_t[N, K].T`` -> int32 ``[M, N]``, on ``torch._int_mm`` when possible.

    CUDA's ``_int_mm`` needs M > 16 and K, N multiples of 8: small M is padded with zero rows,
    other shapes (and meta tensors) take an exact integer fallback.
    """
    m, k = a.shape
    n = b_t.shape[0]
    if a.device.type == "meta":
        return torch.empty((m, n), dtype=torch.int32, device="meta")
    if a.device.type == "cuda":
        if k % 8 or n % 8:
            return (a.double() @ b_t.t().double()).round().to(torch.int32)
        if m <= 16:
            pad = torch.zeros((17 - m, k), dtype=a.dtype, device=a.device)
            return torch._int_mm(torch.cat([a, pad]), b_t.t())[:m]
    try:
        return torch._int_mm(a, b_t.t())
    except RuntimeError:  # a CPU build without int8 GEMM: exact int32 matmul
        return a.to(torch.int32) @ b_t.t().to(torch.int32)


def quantize_per_channel(w: torch.Tensor, axis: int = 0, bits: int = 8
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-channel quantization of ``w`` along ``axis``: ``(int8 values, scales)``."""
    qmax = 2 ** (bits - 1) - 1
    dims = [d for d in range(w.dim()) if d != axis % w.dim()]
    amax = w.abs().amax(dim=dims, keepdim=True) if dims else w.abs()
    scale = amax.clamp_min(1e-12) / qmax
    q = torch.round(w / scale).clamp_(-qmax - 1 if bits < 8 else -qmax, qmax).to(torch.int8)
    return q, scale.reshape(-1).to(torch.float32)


def quantize_grouped(w: torch.Tensor, bits: int, group_size: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric groupwise quantization of a ``[N, K]`` weight: ``(int8 [N,K], scales [N,K/g])``."""
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    qmax = 2 ** (bits - 1) - 1
    scale = groups.abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / qmax
    q = torch.round(groups / scale).clamp_(-qmax - 1, qmax).to(torch.int8)
    return q.reshape(n, k), scale.squeeze(2).to(torch.float32)


def _out_type(ins, attrs) -> tuple[TensorType, ...]:  # noqa: ANN001
    x, w = ins[0], ins[1]
    return (TensorType((*x.shape[:-1], w.shape[0]), x.dtype, x.device),)


def _linear_flops(i, o, a) -> int:  # noqa: ANN001
    return 2 * o[0].numel * i[1].shape[1]


def _dequant_acc(acc: torch.Tensor, row_scale: torch.Tensor | float, w_scale: torch.Tensor,
                 bias: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    out = acc.to(torch.float32) * (row_scale * w_scale)
    if bias is not None:
        out += bias
    return out.to(dtype)


def quantize_rows_asymmetric(x2: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric per-row int8 quantization: ``(int8, scale[M, 1], zero_point[M, 1] int32)``."""
    lo = x2.amin(dim=1, keepdim=True).clamp_max(0)
    hi = x2.amax(dim=1, keepdim=True).clamp_min(0)
    scale = (hi - lo).clamp_min(1e-8) / 255
    zero_point = torch.round(-128 - lo / scale)
    q = torch.round(x2 / scale).add_(zero_point).clamp_(-128, 127).to(torch.int8)
    return q, scale, zero_point.to(torch.int32)


def quantize_activation(x2: torch.Tensor, *, per_token: bool, symmetric: bool
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Dynamic int8 quantization of ``x2[M, K]``: ``(int8, scale, zero_point | None)``.

    Scales (and float zero points) are ``[M, 1]`` per token or 0-d per tensor. Asymmetric
    matches onnx ``DynamicQuantizeLinear`` shifted to int8 (scale ``(hi - lo) / 255`` over a
    range holding 0, zero point ``round(-128 - lo / scale)``); symmetric is ``amax / 127``.
    Few fused passes: ``round(x * (1 / s) + zp)`` is an addcmul then in-place round/clamp.
    """
    if symmetric:
        amax = x2.abs().amax(dim=1, keepdim=True) if per_token else x2.abs().amax()
        scale = amax.clamp_min_(1e-8).div_(QMAX)
        q = torch.mul(x2, scale.reciprocal()).round_().clamp_(QMIN, QMAX)
        return q.to(torch.int8), scale, None
    if per_token:
        lo = x2.amin(dim=1, keepdim=True).clamp_max_(0)
        hi = x2.amax(dim=1, keepdim=True).clamp_min_(0)
    else:
        lo, hi = torch.aminmax(x2)
        lo, hi = lo.clamp_max(0), hi.clamp_min(0)
    scale = (hi - lo).clamp_min_(1e-8).div_(255)
    zero_point = torch.round(-128 - lo / scale)
    q = torch.addcmul(zero_point, x2, scale.reciprocal()).round_().clamp_(-128, 127)
    return q.to(torch.int8), scale, zero_point


def weight_row_sums(w_q: torch.Tensor) -> torch.Tensor:
    """float32 ``[N]`` sums of an int8 ``[N, K]`` weight's rows (zero-point correction)."""
    return w_q.sum(dim=1, dtype=torch.int32).to(torch.float32)


def linear_int8_dynamic(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
                        bias: torch.Tensor | None = None, w_sum: torch.Tensor | None = None, *,
                        symmetric: bool = False, act: str = "per-token") -> torch.Tensor:
    """int8 linear with activation scales (and zero points) computed at run time.

    ``act`` is ``per-token`` (one scale per row) or ``per-tensor``; ``w_sum`` (the weight's
    row sums, :func:`weight_row_sums`) is computed on the fly when not given. The epilogue
    is ``s_x·s_w·acc + (bias - s_x·zp ⊗ s_w·w_sum)``: per tensor one addcmul on the int32
    accumulator; per token a float conversion, two in-place muls and one in-place rank-2
    ``addmm`` that adds the zero-point correction and the bias.
    """
    lead, k, n = x.shape[:-1], x.shape[-1], w_q.shape[0]
    if x.device.type == "meta":
        return x.new_empty((*lead, n))
    x2 = x.reshape(-1, k).float()
    if act not in ("per-token", "per-tensor"):
        raise AccelValueError(f"linear_int8_dynamic: act must be 'per-token' or 'per-tensor', "
                              f"got '{act}'")
    per_token = act == "per-token"
    xq, s_x, zp = quantize_activation(x2, per_token=per_token, symmetric=symmetric)
    acc = int_matmul(xq, w_q)
    w_scale = w_scale.float()
    if not per_token:  # scalar activation scale: everything folds into [N] vectors
        sw = w_scale * s_x
        shift = torch.zeros_like(sw) if bias is None else bias.float().clone()
        if zp is not None:
            ws = weight_row_sums(w_q) if w_sum is None else w_sum.float()
            shift -= zp * ws * sw
        out = torch.addcmul(shift, acc, sw)
    else:
        out = acc.to(torch.float32).mul_(s_x).mul_(w_scale)
        cols, rows = [], []
        if zp is not None:
            ws = weight_row_sums(w_q) if w_sum is None else w_sum.float()
            cols.append(-(s_x * zp))
            rows.append(ws * w_scale)
        if bias is not None:
            cols.append(torch.ones_like(s_x))
            rows.append(bias.float())
        if cols:
            torch.addmm(out, torch.cat(cols, 1), torch.stack(rows), out=out)
    return out.to(x.dtype).reshape(*lead, n)


def linear_int8_static(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
                       bias: torch.Tensor | None = None, *, x_scale: float,
                       x_zero_point: int = 0) -> torch.Tensor:
    """int8 linear with a calibrated per-tensor activation scale and zero point."""
    lead, k = x.shape[:-1], x.shape[-1]
    xq = torch.round(x.reshape(-1, k).float() / x_scale).add_(x_zero_point)
    xq = xq.clamp_(-128, 127).to(torch.int8)
    acc = int_matmul(xq, w_q)
    if x_zero_point:
        acc = acc - x_zero_point * w_q.sum(dim=1, dtype=torch.int32)
    return _dequant_acc(acc, x_scale, w_scale, bias, x.dtype).reshape(*lead, w_q.shape[0])


def dequantize_weight(w_q: torch.Tensor, scales: torch.Tensor, group_size: int,
                      zeros: torch.Tensor | None = None) -> torch.Tensor:
    """Float weight of a groupwise-quantized ``[N, K]`` weight: ``q · s`` per group, or
    ``(q - z) · s`` with zero points ``zeros`` (shaped as ``scales``)."""
    n, k = w_q.shape
    groups = w_q.reshape(n, k // group_size, group_size).to(scales.dtype)
    if zeros is not None:
        groups = groups - zeros.reshape(n, -1, 1).to(scales.dtype)
    return (groups * scales.unsqueeze(2)).reshape(n, k)


def linear_weight_only(x: torch.Tensor, w_q: torch.Tensor, scales: torch.Tensor,
                       bias: torch.Tensor | None = None, zeros: torch.Tensor | None = None,
                       *, bits: int = 8, group_size: int = 0) -> torch.Tensor:
    """Linear with a quantized weight dequantized on the fly (activations stay float);
    ``zeros``: per-group int8 zero points (asymmetric grid), else symmetric."""
    if x.device.type == "meta":
        return x.new_empty((*x.shape[:-1], w_q.shape[0]))
    gs = group_size or w_q.shape[1]
    w = dequantize_weight(w_q, scales.reshape(w_q.shape[0], -1), gs, zeros).to(x.dtype)
    return F.linear(x, w, bias)


def quantize_per_channel_op(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                            *, axis: int = 0) -> torch.Tensor:
    """int8 ``clamp(round(x / scale) + zero_point)`` with scales along ``axis``."""
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    q = torch.round(x / scale.reshape(shape).float()) + zero_point.reshape(shape).float()
    return q.clamp_(-128, 127).to(torch.int8)


def dequantize_per_channel_op(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                              *, axis: int = 0) -> torch.Tensor:
    """float ``(q - zero_point) * scale`` with scales along ``axis``."""
    shape = [1] * q.dim()
    shape[axis % q.dim()] = -1
    return (q.float() - zero_point.reshape(shape).float()) * scale.reshape(shape)


_Q = OpKind.QUANT
register_op(OpDef(
    "linear_int8_dynamic", ("x", "w_q", "w_scale", "bias?", "w_sum?"), linear_int8_dynamic, _Q,
    {"symmetric": Attr(bool, False, "symmetric activation range (no zero point)"),
     "act": Attr(str, "per-token", "activation scale granularity: per-token or per-tensor")},
    infer=_out_type, flops=_linear_flops,
    doc="int8 linear, dynamic (per-token or per-tensor) activation scales, per-channel int8 weight",
))
register_op(OpDef(
    "linear_int8_static", ("x", "w_q", "w_scale", "bias?"), linear_int8_static, _Q,
    {"x_scale": Attr(float, doc="calibrated activation scale"),
     "x_zero_point": Attr(int, 0, "activation zero point (int8 range)")},
    infer=_out_type, flops=_linear_flops,
    doc="int8 linear, calibrated per-tensor activation quantization, per-channel int8 weight",
))
register_op(OpDef(
    "linear_weight_only", ("x", "w_q", "scales", "bias?", "zeros?"), linear_weight_only, _Q,
    {"bits": Attr(int, 8, "weight bits (8 or 4)"),
     "group_size": Attr(int, 0, "input channels per scale; 0 = one group per row")},
    infer=_out_type, flops=_linear_flops,
    doc="linear with an int8/int4 groupwise weight dequantized on the fly, (q - zeros)·scales "
        "with optional per-group zero points",
))
register_op(OpDef(
    "quantize_per_channel", ("x", "scale", "zero_point"), quantize_per_channel_op, _Q,
    {"axis": Attr(int, 0)},
    infer=lambda i, a: (i[0].with_dtype(torch.int8),),
    doc="int8 quantization with per-channel scale and zero point along axis",
))
register_op(OpDef(
    "dequantize_per_channel", ("q", "scale", "zero_point"), dequantize_per_channel_op, _Q,
    {"axis": Attr(int, 0)},
    infer=lambda i, a: (i[0].with_dtype(torch.float32),),
    doc="float dequantization with per-channel scale and zero point along axis",
))
