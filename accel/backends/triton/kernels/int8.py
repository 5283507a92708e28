"""Triton int8 matmul with the dequantization fused in its epilogue (CUDA path of the
quantized linears; runs on CPU tensors under ``TRITON_INTERPRET=1`` for tests).

    out[m, n] = (acc[m, n] - zp[m] · Σ_k w[n, k]) · s_x[m] · s_w[n] + bias[n]
    acc = Σ_k x_q[m, k] · w_q[n, k]          (int8 x int8 -> int32 in tl.dot)

``x_q`` holds per-row (per-token) or broadcast per-tensor scales and zero points, so one kernel
serves ``linear_int8_dynamic`` and ``linear_int8_static``. The ``int8_linear`` kind runs every
node of those ops as its own step (:func:`int8_linear_node_fn`): activation quantization in
torch ops, the matmul and dequantization in the kernel. Weight-side operands (fp32 scales and
bias, the weight's row sums for zero points) are prepared once, at lowering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from accel.backends.triton.kernel import Args, CompiledKernel, KernelGroup, KernelKind, is_float
from accel.backends.triton.partition import Claims
from accel.backends.triton.record import interpreted, launcher
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Node
from accel.ir.ops.quant import quantize_activation


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


@dataclass(frozen=True)
class WeightOperands:
    """The weight side of an int8 linear, as the kernel reads it (prepared once)."""

    w_q: torch.Tensor
    """int8 ``[N, K]``."""
    w_scale: torch.Tensor
    """fp32 ``[N]``, contiguous."""
    bias: torch.Tensor | None
    """fp32 ``[N]``, contiguous."""
    w_sum: torch.Tensor | None
    """Row sums of ``w_q`` (zero-point correction), contiguous; ``None`` when not needed."""

    @classmethod
    def prepare(cls, w_q: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None,
                w_sum: torch.Tensor | None, zero_points: bool) -> WeightOperands:
        """Cast and lay out the weight operands; ``w_sum`` computed when needed and absent."""
        if zero_points:
            w_sum = (w_q.sum(dim=1, dtype=torch.int32) if w_sum is None
                     else w_sum.reshape(-1).contiguous())
        return cls(w_q, w_scale.float().reshape(-1).contiguous(),
                   bias.float().contiguous() if bias is not None else None,
                   w_sum if zero_points else None)


def _blocks() -> tuple[int, int, int]:
    return (16, 16, 32) if interpreted() else (64, 64, 64)


def _launch(x_q: torch.Tensor, x_scale: torch.Tensor, x_zero_point: torch.Tensor | None,
            w: WeightOperands, out: torch.Tensor, block: tuple[int, int, int]) -> None:
    m, k = x_q.shape
    n = w.w_q.shape[0]
    sx = x_scale.reshape(-1).float().expand(m).contiguous()
    zp = (x_zero_point.reshape(-1).to(torch.int32).expand(m).contiguous()
          if x_zero_point is not None else sx)
    wsum = w.w_sum if x_zero_point is not None else sx
    grid = (triton.cdiv(m, block[0]), triton.cdiv(n, block[1]))
    launcher(_int8_matmul_dequant)[grid](
        x_q, w.w_q, sx, zp, w.w_scale, wsum, w.bias if w.bias is not None else sx, out,
        m, n, k, x_q.stride(0), x_q.stride(1), w.w_q.stride(0), w.w_q.stride(1),
        out.stride(0), out.stride(1), HAS_BIAS=w.bias is not None,
        HAS_ZP=x_zero_point is not None, BLOCK_M=block[0], BLOCK_N=block[1], BLOCK_K=block[2],
    )


def int8_matmul_dequant(x_q: torch.Tensor, w_q: torch.Tensor, x_scale: torch.Tensor,
                        w_scale: torch.Tensor, bias: torch.Tensor | None = None,
                        x_zero_point: torch.Tensor | None = None,
                        w_sum: torch.Tensor | None = None,
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """``(x_q[M,K] @ w_q[N,K].T - zp ⊗ Σw) · (s_x ⊗ s_w) + bias`` as fp32 ``[M, N]``.

    ``w_sum`` (row sums of ``w_q``) is computed when not given; ``out`` is an optional
    preallocated fp32 ``[M, N]`` result. Prepares the weight operands on every call: the
    kind's launcher prepares them once instead.
    """
    if out is None:
        out = torch.empty((x_q.shape[0], w_q.shape[0]), dtype=torch.float32, device=x_q.device)
    w = WeightOperands.prepare(w_q, w_scale, bias, w_sum, x_zero_point is not None)
    _launch(x_q, x_scale, x_zero_point, w, out, _blocks())
    return out


Quantizer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
"""``x2[M, K] -> (x_q int8, scale, zero_point | None)``."""


def _dynamic(node: Node) -> tuple[Quantizer, bool]:
    act = node.attrs.get("act", "per-token")
    if act not in ("per-token", "per-tensor"):
        raise AccelValueError(f"int8 kernel: node {node.name} has act={act!r}; "
                              "expected 'per-token' or 'per-tensor'")
    per_token, symmetric = act == "per-token", bool(node.attrs.get("symmetric", False))

    def quantize(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return quantize_activation(x2, per_token=per_token, symmetric=symmetric)
    return quantize, not symmetric


def _static(node: Node) -> tuple[Quantizer, bool]:
    x_scale, x_zp = float(node.attrs["x_scale"]), int(node.attrs.get("x_zero_point", 0))

    def quantize(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        xq = torch.round(x2 / x_scale).add_(x_zp).clamp_(-128, 127).to(torch.int8)
        # torch.full, not torch.tensor: no host-to-device copy (CUDA-graph capturable)
        scale = torch.full((1,), x_scale, dtype=torch.float32, device=x2.device)
        zp = torch.full((1,), x_zp, dtype=torch.int32, device=x2.device) if x_zp else None
        return xq, scale, zp
    return quantize, x_zp != 0


ACTIVATION_QUANTIZERS: dict[str, Callable[[Node], tuple[Quantizer, bool]]] = {
    "linear_int8_dynamic": _dynamic,
    "linear_int8_static": _static,
}
"""The quantized linears the kernel runs: op -> (activation quantizer exactly like the op's
reference, whether it makes zero points)."""


def int8_linear_node_fn(node: Node, weights: WeightOperands | None = None
                        ) -> Callable[..., torch.Tensor]:
    """Step function ``(x, w_q, w_scale, bias?, w_sum?, out=None) -> out`` for an int8 linear.

    Quantizes the activation exactly like the node's reference op (same scales, zero points
    and rounding), then runs the int8 matmul with the fused dequantization. With ``weights``
    (prepared at lowering from the node's constant inputs) the weight arguments are ignored.
    """
    if node.op not in ACTIVATION_QUANTIZERS:
        raise AccelValueError(f"int8 kernel: node {node.name} is '{node.op}', expected one of "
                              f"{sorted(ACTIVATION_QUANTIZERS)}")
    quantize, zero_points = ACTIVATION_QUANTIZERS[node.op](node)
    block = _blocks()

    def run(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor,
            bias: torch.Tensor | None = None, w_sum: torch.Tensor | None = None,
            out: torch.Tensor | None = None) -> torch.Tensor:
        w = weights or WeightOperands.prepare(w_q, w_scale, bias, w_sum, zero_points)
        lead, k, n = x.shape[:-1], x.shape[-1], w.w_q.shape[0]
        xq, s_x, zp = quantize(x.reshape(-1, k).float())
        direct = out is not None and out.dtype == torch.float32 and out.is_contiguous()
        res = out.view(-1, n) if direct else torch.empty((xq.shape[0], n), dtype=torch.float32,
                                                          device=x.device)
        _launch(xq, s_x, zp, w, res, block)
        if out is None:
            return res.to(x.dtype).reshape(*lead, n)
        if not direct:
            out.copy_(res.reshape(out.shape))
        return out
    return run


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """A quantized linear on a float activation with a 2-d int8 weight."""
    x, w_q = node.inputs[0], node.inputs[1]
    ok = (is_float(x) and w_q.dtype == torch.int8 and len(w_q.shape) == 2
          and len(x.shape) >= 1 and x.shape[-1] == w_q.shape[1])
    return [node] if ok else None


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """Runs the node into its planned output; constant weights prepared here, once."""
    (node,) = group.nodes
    _, zero_points = ACTIVATION_QUANTIZERS[node.op](node)
    w_q, w_scale, *rest = node.inputs[1:]
    bias, w_sum = (rest + [None, None])[:2]
    weights = None
    if all(v is None or graph.is_const(v) for v in (w_q, w_scale, bias, w_sum)):
        weights = WeightOperands.prepare(
            graph.const(w_q), graph.const(w_scale), graph.const(bias) if bias else None,
            graph.const(w_sum) if w_sum else None, zero_points)
    run = int8_linear_node_fn(node, weights)

    def step(ins: list, outs: list[torch.Tensor]) -> None:
        run(*ins, out=outs[0])
    return step


KIND = KernelKind("int8_linear", frozenset(ACTIVATION_QUANTIZERS), claim, launch,
                  args=Args.NODE)
