"""Attention kind: flash attention (online softmax) with optional additive bias and causal mask.

``softmax(q @ k^T * scale + bias) @ v`` for ``q [B, H, Lq, D]``, ``k [B, H, Lk, D]``,
``v [B, H, Lk, Dv]``; the float ``bias`` is read through broadcast strides (0 on broadcast
dims), so a ``[B, 1, 1, Lk]`` token-size bias costs no copy. The causal mask is top-left
aligned (key ``j`` visible to query ``i`` iff ``j <= i``), as SDPA's ``is_causal``. Output is
``[B, H, Lq, Dv]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton

from accel.backends.triton.kernel import (
    FLOAT_DTYPES,
    INTERPRETER,
    CompiledKernel,
    Device,
    KernelGroup,
    KernelKind,
    KernelSource,
)
from accel.backends.triton.partition import Claims, broadcasts_to
from accel.backends.triton.templates.expr import header, jit, kernel_name
from accel.ir.graph import Graph, Node
from accel.ir.shapes import is_symbolic

TENSOR_CORE_CONFIGS = [  # (BLOCK_M, BLOCK_N, num_warps, num_stages)
    (128, 32, 8, 3),
    (128, 32, 8, 4),
    (64, 32, 4, 3),
    (64, 32, 4, 4),
]
"""Configs for tensor-core dots (fp16/bf16, tf32): 64-row tiles and 4-warp groups, so all
use wgmma on sm_90a; none spills on sm_80 or sm_90a at head dims 16 and 64, with or without
a bias (ToMe's log-size bias, BERT's mask). With a bias, 128x64 tiles (4 or 8 warps) and
64x64 ones (4 or 8 warps) spill 40-372 B; the 2-warp 64x32 tile cannot use wgmma."""
IEEE_CONFIGS = [
    (64, 32, 8, 3),
    (64, 32, 8, 2),
    (32, 32, 4, 3),
    (64, 16, 4, 3),
]
"""Configs for exact fp32 dots (CUDA cores): none spills on sm_80 or sm_90a at head dims 16
and 64, with or without a bias. Larger tiles do: 128x64 on 4 warps 13-17 KB (ptxas settles
at 32 registers); with ToMe's bias 64x64 on 8 warps and 64x32 on 4 170-650 B, 64x64 and
128x32 on 16 warps 12-16 B."""
INTERPRET_CONFIGS = [(16, 16, 1, 1)]


def configs(device: Device, dtype: torch.dtype) -> list[tuple[int, int, int, int]]:
    """The configs offered on ``device`` for ``dtype`` operands."""
    if device.interpret:
        return INTERPRET_CONFIGS
    return TENSOR_CORE_CONFIGS if device.tensor_core_dots(dtype) else IEEE_CONFIGS


def configs_source(configs: list[tuple[int, int, int, int]]) -> str:
    """The ``triton.autotune`` config list as source."""
    items = ",\n    ".join(
        f"triton.Config({{'BLOCK_M': {m}, 'BLOCK_N': {n}}}, num_warps={w}, num_stages={s})"
        for m, n, w, s in configs)
    return f"[\n    {items},\n]"


@dataclass(frozen=True)
class AttentionLaunch:
    """Launch facts of an attention kernel."""

    has_bias: bool
    causal: bool


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """A float 4-d attention with head dims up to 256 and a broadcastable float bias."""
    q, k, v = node.inputs[:3]
    bias = node.inputs[3] if len(node.inputs) > 3 else None
    if not all(t.dtype in FLOAT_DTYPES for t in (q, k, v)) or len(q.shape) != 4:
        return None
    if is_symbolic((q.shape[-1], v.shape[-1])):
        return None  # the head dims are compile-time block sizes
    if not (q.shape[:2] == k.shape[:2] == v.shape[:2] and k.shape[-1] == q.shape[-1]
            and q.shape[-1] <= 256 and v.shape[-1] <= 256):
        return None
    if bias is not None and not (bias.dtype in FLOAT_DTYPES
                                 and broadcasts_to(bias, (*q.shape[:3], k.shape[2]))):
        return None
    return [node]


def emit(group: KernelGroup, device: Device = INTERPRETER) -> KernelSource[AttentionLaunch]:
    """Triton source for one attention node."""
    interpret = device.interpret
    (node,) = group.nodes
    q, k, v = node.inputs[:3]
    has_bias = len(node.inputs) > 3 and node.inputs[3] is not None
    name = kernel_name(group.name, "attention")
    d, dv = q.shape[-1], v.shape[-1]
    scale = node.attrs["scale"]
    scale = d ** -0.5 if scale is None else scale
    causal = bool(node.attrs["causal"])
    precision = device.dot_precision(q.dtype)
    # the interpreter's tl.dot mishandles bf16 operands (numpy has no bf16): upcast there
    upcast = ".to(tl.float32)" if interpret and q.dtype == torch.bfloat16 else ""
    if upcast:
        precision = ', input_precision="ieee"'
    offered = configs(device, q.dtype)
    bias_add = """
        bias_tile = (bias_ptr + b * stride_zb + h * stride_zh + rm[:, None] * stride_zm
                     + rn[None, :] * stride_zn)
        in_bounds = (rm[:, None] < LQ) & (rn[None, :] < LK)
        s += tl.load(bias_tile, mask=in_bounds, other=0.0).to(tl.float32)""" if has_bias else ""
    causal_mask = """
        valid = valid & (rn[None, :] <= rm[:, None])""" if causal else ""
    hi = "tl.minimum(LK, (pid_m + 1) * BLOCK_M)" if causal else "LK"
    src = (header("attention", group.name, group.nodes, {
        v_: n_ for v_, n_ in zip(node.inputs, ("q_ptr", "k_ptr", "v_ptr", "bias_ptr"), strict=False)
        if v_ is not None} | {node.output: "out_ptr"}) + f"""

@triton.autotune(configs={configs_source(offered)}, key=["LQ", "LK"])
{jit(["H", "LQ", "LK"] if is_symbolic((q.shape, k.shape)) else [])}
def {name}(q_ptr, k_ptr, v_ptr, bias_ptr, out_ptr, H, LQ, LK,
        stride_qb, stride_qh, stride_qm, stride_qd,
        stride_kb, stride_kh, stride_kn, stride_kd,
        stride_vb, stride_vh, stride_vn, stride_vd,
        stride_zb, stride_zh, stride_zm, stride_zn,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    D: tl.constexpr = {d}
    DV: tl.constexpr = {dv}
    BLOCK_D: tl.constexpr = {max(16, triton.next_power_of_2(d))}
    BLOCK_DV: tl.constexpr = {max(16, triton.next_power_of_2(dv))}
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rd = tl.arange(0, BLOCK_D)
    rdv = tl.arange(0, BLOCK_DV)
    q_tile = (q_ptr + b * stride_qb + h * stride_qh + rm[:, None] * stride_qm
              + rd[None, :] * stride_qd)
    q = tl.load(q_tile, mask=(rm[:, None] < LQ) & (rd[None, :] < D), other=0.0)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), dtype=tl.float32)
    for n0 in range(0, {hi}, BLOCK_N):
        rn = n0 + tl.arange(0, BLOCK_N)
        k_tile = (k_ptr + b * stride_kb + h * stride_kh + rn[None, :] * stride_kn
                  + rd[:, None] * stride_kd)
        kt = tl.load(k_tile, mask=(rn[None, :] < LK) & (rd[:, None] < D), other=0.0)
        s = tl.dot(q{upcast}, kt{upcast}{precision}) * {scale!r}{bias_add}
        valid = rn[None, :] < LK{causal_mask}
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        v_tile = (v_ptr + b * stride_vb + h * stride_vh + rn[:, None] * stride_vn
                  + rdv[None, :] * stride_vd)
        vb = tl.load(v_tile, mask=(rn[:, None] < LK) & (rdv[None, :] < DV), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vb.dtype){upcast}, vb{upcast}{precision})
        m_i = m_new
    acc = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # fully masked rows give 0, as SDPA
    out_tile = out_ptr + ((b * H + h) * LQ + rm[:, None]) * DV + rdv[None, :]
    out_mask = (rm[:, None] < LQ) & (rdv[None, :] < DV)
    tl.store(out_tile, acc.to(out_ptr.dtype.element_ty), mask=out_mask)
""")
    return KernelSource(name, src, AttentionLaunch(has_bias, causal))


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """Autotuned grid over query blocks x (batch, head); the bias is read through broadcast
    strides. Sizes come from the call's tensors (one kernel for every length)."""
    assert kernel is not None
    facts: AttentionLaunch = kernel.source.launch
    fn, (node,) = kernel.fn, group.nodes
    pos = {v: i for i, v in enumerate(group.inputs)}
    qkv_pos = [pos[v] for v in node.inputs[:3]]
    bias_pos = pos[node.inputs[3]] if facts.has_bias else None

    def run(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        q, k, v = (ins[i] for i in qkv_pos)
        bsz, heads, lq, _ = q.shape
        lk = k.shape[2]

        def grid(meta: dict) -> tuple[int, int]:
            return (triton.cdiv(lq, meta["BLOCK_M"]), bsz * heads)

        if bias_pos is not None:
            bias = ins[bias_pos].expand(bsz, heads, lq, lk)
            sz = bias.stride()
        else:
            bias, sz = q, (0, 0, 0, 0)
        fn[grid](q, k, v, bias, outs[0], heads, lq, lk, *q.stride(), *k.stride(),
                 *v.stride(), *sz)
    return run


KIND = KernelKind("attention", frozenset({"attention"}), claim, launch, emit=emit)
