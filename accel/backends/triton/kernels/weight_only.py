"""Triton weight-only linear: an int4 (packed two per byte) or int8 groupwise weight
dequantized in registers inside the matmul's K loop (CUDA path of ``linear_weight_only``, the
op `quantize{mode=int4-weight-only|int8-weight-only}` and GPTQ write; runs on CPU tensors
under ``TRITON_INTERPRET=1`` for tests).

    out[m, n] = Σ_k x[m, k] · ((q[n, k] - z[n, k // group]) · s[n, k // group]) + bias[n]

(``z`` = 0 for symmetric groups; int4 codes and zero points both lie in [-8, 7]).

The weight never exists in float in memory: int4 weights are read as bytes holding the
offset codes ``q + 8`` of rows ``k = 2j`` (low nibble) and ``2j + 1`` (high nibble) of the
transposed ``[K, N]`` weight, so a ``[K, N]`` int4 weight is ``K·N/2`` bytes, a quarter of
fp16 (the point of int4 weight-only: batch-1 decoding reads every weight once per token and is
bound by memory bandwidth). Each K step unpacks the even and odd rows, scales them by their
group's scale, and issues two dots against the even and odd columns of the activation tile.
The weight side (packing, transposed scales, fp32 bias) is prepared once, at lowering;
the ATen path of the same op dequantizes the whole weight to float on every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from accel.backends.triton.kernel import (
    FLOAT_DTYPES,
    Args,
    CompiledKernel,
    KernelGroup,
    KernelKind,
)
from accel.backends.triton.partition import Claims
from accel.backends.triton.record import interpreted, launcher
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Node


@triton.jit
def _dot(acc, a, w, FP32_DOT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ w, with the dequantized ``w`` in fp32; ``a``'s dtype sets the dot's."""
    if UPCAST:  # the interpreter's tl.dot mishandles bf16 operands (numpy has no bf16)
        return acc + tl.dot(a.to(tl.float32), w, input_precision="ieee")
    if FP32_DOT:
        return acc + tl.dot(a, w, input_precision=PRECISION)
    return acc + tl.dot(a, w.to(a.dtype))


@triton.jit
def _weight_only_matmul(
    x_ptr, w_ptr, s_ptr, z_ptr, bias_ptr, out_ptr,
    M, N, K, GROUP,
    stride_xm, stride_xk, stride_om, stride_on,
    BITS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ZERO: tl.constexpr, FP32_DOT: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm[:, None] < M
    n_ok = rn[None, :] < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if BITS == 4:
        rj = tl.arange(0, BLOCK_K // 2)
        for k0 in range(0, K, BLOCK_K):
            j = k0 // 2 + rj  # packed row: weight rows 2j (low nibble) and 2j + 1 (high)
            ke = 2 * j
            k_ok = ke[:, None] < K
            packed = tl.load(w_ptr + j[:, None] * N + rn[None, :], mask=k_ok & n_ok, other=136)
            scale = tl.load(s_ptr + (ke // GROUP)[:, None] * N + rn[None, :], mask=k_ok & n_ok,
                            other=0.0)
            w_even = ((packed & 15).to(tl.int32) - 8).to(tl.float32)
            w_odd = ((packed >> 4).to(tl.int32) - 8).to(tl.float32)
            if HAS_ZERO:  # asymmetric groups: (q - z) · s
                zero = tl.load(z_ptr + (ke // GROUP)[:, None] * N + rn[None, :],
                               mask=k_ok & n_ok, other=0).to(tl.float32)
                w_even -= zero
                w_odd -= zero
            w_even *= scale
            w_odd *= scale
            x_row = x_ptr + rm[:, None] * stride_xm
            x_ok = m_ok & (ke[None, :] < K)
            x_even = tl.load(x_row + ke[None, :] * stride_xk, mask=x_ok, other=0.0)
            x_odd = tl.load(x_row + (ke + 1)[None, :] * stride_xk, mask=x_ok, other=0.0)
            acc = _dot(acc, x_even, w_even, FP32_DOT, PRECISION, UPCAST)
            acc = _dot(acc, x_odd, w_odd, FP32_DOT, PRECISION, UPCAST)
    else:
        rk = tl.arange(0, BLOCK_K)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + rk
            k_ok = kk[:, None] < K
            q = tl.load(w_ptr + kk[:, None] * N + rn[None, :], mask=k_ok & n_ok, other=0)
            scale = tl.load(s_ptr + (kk // GROUP)[:, None] * N + rn[None, :], mask=k_ok & n_ok,
                            other=0.0)
            a = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                        mask=m_ok & (kk[None, :] < K), other=0.0)
            w = q.to(tl.float32)
            if HAS_ZERO:
                w -= tl.load(z_ptr + (kk // GROUP)[:, None] * N + rn[None, :],
                             mask=k_ok & n_ok, other=0).to(tl.float32)
            acc = _dot(acc, a, w * scale, FP32_DOT, PRECISION, UPCAST)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0)[None, :]
    tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :] * stride_on,
             acc.to(out_ptr.dtype.element_ty), mask=m_ok & n_ok)


def pack_int4(w_q: torch.Tensor) -> torch.Tensor:
    """``[N, K]`` int4 values (int8 storage, in [-8, 7]; K even) -> uint8 ``[K/2, N]``: byte
    ``(j, n)`` holds ``w_q[n, 2j] + 8`` in its low nibble and ``w_q[n, 2j+1] + 8`` in its
    high one."""
    codes = (w_q.t().to(torch.int16) + 8).to(torch.uint8)  # [K, N], 0..15
    return (codes[0::2] | (codes[1::2] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: uint8 ``[K/2, N]`` -> int8 ``[N, K]``."""
    low = (packed & 15).to(torch.int8) - 8
    high = (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=1).reshape(-1, packed.shape[1]).t().contiguous()


@dataclass(frozen=True)
class WeightOnlyOperands:
    """The weight side of a weight-only linear, as the kernel reads it (prepared once)."""

    w: torch.Tensor
    """int4: uint8 ``[K/2, N]`` (:func:`pack_int4`); int8: int8 ``[K, N]``, contiguous."""
    scales: torch.Tensor
    """fp32 ``[K / group, N]``, contiguous."""
    bias: torch.Tensor | None
    """fp32 ``[N]``, contiguous."""
    zeros: torch.Tensor | None
    """int8 ``[K / group, N]`` zero points (asymmetric groups), contiguous."""
    bits: int
    group: int
    n: int
    k: int

    @classmethod
    def prepare(cls, node: Node, w_q: torch.Tensor, scales: torch.Tensor,
                bias: torch.Tensor | None, zeros: torch.Tensor | None = None
                ) -> WeightOnlyOperands:
        """Pack and lay out the weight operands of ``node``; values outside the int4 range
        are an error naming the node (the op's reference would compute with them)."""
        bits, n, k = int(node.attrs.get("bits", 8)), *w_q.shape
        group = int(node.attrs.get("group_size", 0)) or k
        if bits == 4:
            lo, hi = int(w_q.min()), int(w_q.max())
            if lo < -8 or hi > 7:
                raise AccelValueError(
                    f"weight-only kernel: node {node.name} says bits=4 but its weight holds "
                    f"values in [{lo}, {hi}], outside int4's [-8, 7]; requantize it")
            w = pack_int4(w_q)
        else:
            w = w_q.t().contiguous()
        s = scales.float().reshape(n, k // group).t().contiguous()
        z = (zeros.to(torch.int8).reshape(n, k // group).t().contiguous()
             if zeros is not None else None)
        return cls(w, s, bias.float().contiguous() if bias is not None else None, z,
                   bits, group, n, k)


def _blocks(dtype: torch.dtype, precision: str) -> tuple[int, int, int]:
    """Tiles (4 warps): 64 rows for sm_90's wgmma where the dots run on tensor cores (few-row,
    decoding calls are bound by the weight's bytes, not by idle MMA rows), smaller ones for
    fp32 on CUDA cores; the largest that build without spills on sm_80 and sm_90a for fp16,
    bf16 and fp32 (tf32 or ieee) — tests/backends/triton/test_triton_weight_only.py."""
    if interpreted():
        return 16, 16, 32
    if dtype == torch.float32 and precision == "ieee":
        return 32, 32, 16
    return 64, 64, 32


def _launch(x2: torch.Tensor, w: WeightOnlyOperands, out: torch.Tensor, precision: str) -> None:
    m = x2.shape[0]
    bm, bn, bk = _blocks(x2.dtype, precision)
    grid = (triton.cdiv(m, bm), triton.cdiv(w.n, bn))
    launcher(_weight_only_matmul)[grid](
        x2, w.w, w.scales, w.zeros if w.zeros is not None else w.scales,
        w.bias if w.bias is not None else w.scales, out,
        m, w.n, w.k, w.group, x2.stride(0), x2.stride(1), out.stride(0), out.stride(1),
        BITS=w.bits, HAS_BIAS=w.bias is not None, HAS_ZERO=w.zeros is not None,
        FP32_DOT=x2.dtype == torch.float32,
        PRECISION=precision, UPCAST=interpreted() and x2.dtype == torch.bfloat16,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=4,
    )


def weight_only_node_fn(node: Node, weights: WeightOnlyOperands | None = None,
                        precision: str = "ieee") -> Callable[..., torch.Tensor]:
    """Step function ``(x, w_q, scales, bias?, zeros?, out=None) -> out`` of a
    ``linear_weight_only``
    node; with ``weights`` (prepared at lowering) the weight arguments are ignored.
    ``precision`` is ``tl.dot``'s ``input_precision`` for float32 activations."""

    def run(x: torch.Tensor, w_q: torch.Tensor, scales: torch.Tensor,
            bias: torch.Tensor | None = None, zeros: torch.Tensor | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
        w = weights or WeightOnlyOperands.prepare(node, w_q, scales, bias, zeros)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, w.k)
        direct = out is not None and out.dtype == x.dtype and out.is_contiguous()
        res = out.view(-1, w.n) if direct else torch.empty((x2.shape[0], w.n), dtype=x.dtype,
                                                            device=x.device)
        if x2.shape[0]:
            _launch(x2, w, res, precision)
        if out is None:
            return res.reshape(*lead, w.n)
        if not direct:
            out.copy_(res.reshape(out.shape))
        return out
    return run


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """A weight-only linear on a float activation with a constant 2-d int8-stored weight
    (bits 4 or 8) and constant scales; int4 needs an even K and even groups."""
    x, w_q, scales = node.inputs[0], node.inputs[1], node.inputs[2]
    bias = node.inputs[3] if len(node.inputs) > 3 else None
    zeros = node.inputs[4] if len(node.inputs) > 4 else None
    g = claims.graph
    bits = node.attrs.get("bits", 8)
    k = w_q.shape[1] if len(w_q.shape) == 2 else 0
    group = node.attrs.get("group_size", 0) or k
    ok = (x.dtype in FLOAT_DTYPES and w_q.dtype == torch.int8 and len(w_q.shape) == 2
          and len(x.shape) >= 1 and x.shape[-1] == k and bits in (4, 8)
          and g.is_const(w_q) and g.is_const(scales) and (bias is None or g.is_const(bias))
          and (zeros is None or g.is_const(zeros))
          and isinstance(group, int) and group > 0 and k % group == 0
          and (bits == 8 or (k % 2 == 0 and group % 2 == 0)))
    return [node] if ok else None


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """Runs the node into its planned output; the weight packed here, once."""
    (node,) = group.nodes
    w_q, scales = node.inputs[1], node.inputs[2]
    bias = node.inputs[3] if len(node.inputs) > 3 else None
    zeros = node.inputs[4] if len(node.inputs) > 4 else None
    weights = WeightOnlyOperands.prepare(
        node, graph.const(w_q), graph.const(scales),
        graph.const(bias) if bias is not None else None,
        graph.const(zeros) if zeros is not None else None)
    run = weight_only_node_fn(node, weights, group.device.fp32_precision)

    def step(ins: list, outs: list[torch.Tensor]) -> None:
        run(*ins, out=outs[0])
    return step


KIND = KernelKind("weight_only", frozenset({"linear_weight_only"}), claim, launch,
                  args=Args.NODE)
