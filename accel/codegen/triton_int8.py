"""Triton int8 matmul with the dequantization fused in its epilogue (CUDA path of the
quantized linears; runs on CPU tensors under ``TRITON_INTERPRET=1`` for tests).

    out[m, n] = (acc[m, n] - zp[m] · Σ_k w[n, k]) · s_x[m] · s_w[n] + bias[n]
    acc = Σ_k x_q[m, k] · w_q[n, k]          (int8 x int8 -> int32 in tl.dot)

``x_q`` holds per-row (per-token) or broadcast per-tensor scales and zero points, so one kernel
serves ``linear_int8_dynamic`` and ``linear_int8_static``. The ``cuda`` target runs every node
of those ops as its own step through :func:`int8_linear_node_fn` (activation quantization in
torch ops, the matmul and dequantization in the kernel).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from accel.codegen.fusion import INT8_LINEAR_OPS
from accel.errors import AccelValueError
from accel.ir.graph import Node
from accel.ir.ops.quant import quantize_activation, quantize_rows_asymmetric


@triton.jit
def _int8_matmul_dequant(
    x_ptr, w_ptr, sx_ptr, zp_ptr, sw_ptr, wsum_ptr, bias_ptr, out_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wn, stride_wk, stride_om, stride_on,
    HAS_BIAS: tl.constexpr, HAS_ZP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (kk[None, :] < K), other=0)
        b = tl.load(w_ptr + rn[None, :] * stride_wn + kk[:, None] * stride_wk,
                    mask=(rn[None, :] < N) & (kk[:, None] < K), other=0)
        acc += tl.dot(a, b, out_dtype=tl.int32)
    # epilogue: zero-point correction, dequantization, bias — on the accumulator, one store
    sx = tl.load(sx_ptr + rm, mask=rm < M, other=0.0)
    sw = tl.load(sw_ptr + rn, mask=rn < N, other=0.0)
    out = acc.to(tl.float32)
    if HAS_ZP:
        zp = tl.load(zp_ptr + rm, mask=rm < M, other=0).to(tl.float32)
        wsum = tl.load(wsum_ptr + rn, mask=rn < N, other=0).to(tl.float32)
        out = out - zp[:, None] * wsum[None, :]
    out = out * sx[:, None] * sw[None, :]
    if HAS_BIAS:
        out = out + tl.load(bias_ptr + rn, mask=rn < N, other=0.0)[None, :]
    tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :] * stride_on, out,
             mask=(rm[:, None] < M) & (rn[None, :] < N))


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def int8_matmul_dequant(x_q: torch.Tensor, w_q: torch.Tensor, x_scale: torch.Tensor,
                        w_scale: torch.Tensor, bias: torch.Tensor | None = None,
                        x_zero_point: torch.Tensor | None = None,
                        w_sum: torch.Tensor | None = None,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """``(x_q[M,K] @ w_q[N,K].T - zp ⊗ Σw) · (s_x ⊗ s_w) + bias`` as fp32 ``[M, N]``.

    ``w_sum`` (row sums of ``w_q``) is computed when not given; ``out`` is an optional
    preallocated fp32 ``[M, N]`` result.
    """
    m, k = x_q.shape
    n = w_q.shape[0]
    if out is None:
        out = torch.empty((m, n), dtype=torch.float32, device=x_q.device)
    sx = x_scale.reshape(-1).float().expand(m).contiguous()
    zp = x_zero_point.reshape(-1).to(torch.int32).expand(m).contiguous() \
        if x_zero_point is not None else sx
    if x_zero_point is None:
        wsum = sx
    elif w_sum is None:
        wsum = w_q.sum(dim=1, dtype=torch.int32)
    else:
        wsum = w_sum.reshape(-1).contiguous()
    block = (16, 16, 32) if _interpreting() else (64, 64, 64)
    grid = (triton.cdiv(m, block[0]), triton.cdiv(n, block[1]))
    _int8_matmul_dequant[grid](
        x_q, w_q, sx, zp, w_scale.float().contiguous(), wsum,
        bias.float().contiguous() if bias is not None else sx, out, m, n, k,
        x_q.stride(0), x_q.stride(1), w_q.stride(0), w_q.stride(1), out.stride(0),
        out.stride(1), HAS_BIAS=bias is not None, HAS_ZP=x_zero_point is not None,
        BLOCK_M=block[0], BLOCK_N=block[1], BLOCK_K=block[2],
    )
    return out


def int8_linear(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """``linear_int8_dynamic`` on the Triton kernel: per-token quantization, fused dequant."""
    lead, k = x.shape[:-1], x.shape[-1]
    xq, s_x, zp = quantize_rows_asymmetric(x.reshape(-1, k).float())
    out = int8_matmul_dequant(xq, w_q, s_x, w_scale, bias, zp)
    return out.to(x.dtype).reshape(*lead, w_q.shape[0])


def int8_linear_node_fn(node: Node) -> Callable[..., torch.Tensor]:
    """Step function ``(x, w_q, w_scale, bias?, w_sum?) -> out`` for an int8 linear node.

    Quantizes the activation exactly like the node's reference op (same scales, zero points
    and rounding), then runs the int8 matmul with the fused dequantization.
    """
    if node.op not in INT8_LINEAR_OPS:
        raise AccelValueError(f"int8 kernel: node {node.name} is '{node.op}', expected one of "
                              f"{sorted(INT8_LINEAR_OPS)}")
    attrs = node.attrs
    if node.op == "linear_int8_dynamic":
        act = attrs.get("act", "per-token")
        if act not in ("per-token", "per-tensor"):
            raise AccelValueError(f"int8 kernel: node {node.name} has act={act!r}; "
                                  "expected 'per-token' or 'per-tensor'")
        per_token, symmetric = act == "per-token", bool(attrs.get("symmetric", False))

        def quantize(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            return quantize_activation(x2, per_token=per_token, symmetric=symmetric)
    else:
        x_scale, x_zp = float(attrs["x_scale"]), int(attrs.get("x_zero_point", 0))

        def quantize(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
            xq = torch.round(x2 / x_scale).add_(x_zp).clamp_(-128, 127).to(torch.int8)
            # torch.full, not torch.tensor: no host-to-device copy (CUDA-graph capturable)
            scale = torch.full((1,), x_scale, dtype=torch.float32, device=x2.device)
            zp = torch.full((1,), x_zp, dtype=torch.int32, device=x2.device) if x_zp else None
            return xq, scale, zp

    def run(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
            bias: torch.Tensor | None = None, w_sum: torch.Tensor | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
        lead, k, n = x.shape[:-1], x.shape[-1], w_q.shape[0]
        xq, s_x, zp = quantize(x.reshape(-1, k).float())
        direct = out is not None and out.dtype == torch.float32 and out.is_contiguous()
        res = int8_matmul_dequant(xq, w_q, s_x, w_scale, bias, zp, w_sum,
                                  out.view(-1, n) if direct else None)
        if out is None:
            return res.to(x.dtype).reshape(*lead, n)
        if not direct:
            out.copy_(res.reshape(out.shape))
        return out
    return run
