"""Matmul kind: tiled ``[B, M, K] @ [B, K, N]`` with a fused pointwise epilogue.

``linear`` is ``x[M, K] @ weight.T`` (the weight's strides do the transpose) plus bias; the
epilogue (activation, residual add, scale) runs on the fp32 accumulator before the store.
Block sizes are autotuned over a small config list (one config under the interpreter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton

from accel.backends.triton.kernel import (
    INTERPRETER,
    CompiledKernel,
    Device,
    KernelGroup,
    KernelKind,
    KernelSource,
    is_float,
)
from accel.backends.triton.partition import Claims
from accel.backends.triton.templates import pointwise
from accel.backends.triton.templates.expr import (
    Emitter,
    header,
    jit,
    kernel_name,
    pointwise_chain,
    reg_name,
)
from accel.ir.graph import Graph, Node
from accel.ir.shapes import Dim, compile_exprs, is_symbolic
from accel.runtime.schedule import sized

GPU_CONFIGS = [  # (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages)
    (128, 128, 32, 8, 3),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 32, 4, 4),
    (32, 64, 32, 4, 5),
]
"""Configs the autotuner tries on a GPU; :func:`configs` picks among them per device. All
compile without spills for sm_80 and sm_90a in fp16, bf16 and fp32 (checked ahead of time:
``accel kernels``, tests/backends/triton/test_aot.py)."""
INTERPRET_CONFIGS = [(32, 32, 32, 1, 1)]
WGMMA_ROWS = 64
"""wgmma (sm_90) works on 64-row tiles of a 4-warp group: smaller tiles fall back to
mma.sync."""


def configs(device: Device, dtype: torch.dtype, m: Dim
            ) -> tuple[list[tuple[int, int, int, int, int]], tuple[str, ...]]:
    """The configs offered on ``device`` for ``dtype`` operands and ``m`` rows, and a note
    when the choice gives something up.

    On sm_90a with tensor-core dots only configs wgmma can run (64-row tiles, warps in
    groups of 4) are offered, unless the problem has fewer than 64 rows: then the 32-row
    tile, on mma.sync, and the report says so.
    """
    if device.interpret:
        return INTERPRET_CONFIGS, ()
    if not (device.hopper and device.tensor_core_dots(dtype)):
        return GPU_CONFIGS, ()
    wgmma = [c for c in GPU_CONFIGS if c[0] >= WGMMA_ROWS and c[3] % 4 == 0]
    if isinstance(m, int) and m < WGMMA_ROWS:
        small = [c for c in GPU_CONFIGS if c[0] < WGMMA_ROWS]
        return small, (f"matmul with {m} rows (< {WGMMA_ROWS}): 32-row tiles on mma.sync, "
                       "not wgmma",)
    return wgmma, ()


def configs_source(configs: list[tuple[int, int, int, int, int]]) -> str:
    """The ``triton.autotune`` config list as source."""
    items = ",\n    ".join(
        f"triton.Config({{'BLOCK_M': {m}, 'BLOCK_N': {n}, 'BLOCK_K': {k}}}, num_warps={w}, "
        f"num_stages={s})" for m, n, k, w, s in configs)
    return f"[\n    {items},\n]"


@dataclass(frozen=True)
class MatmulLaunch:
    """Launch facts of a matmul kernel: the problem ``batch x [m, k] @ [k, n]``."""

    m: Dim
    n: Dim
    k: Dim
    batch: Dim
    has_bias: bool
    sizes: tuple[Dim, ...] = ()
    """Symbolic sizes the epilogue's index maps use, passed as size arguments in order."""


def _fits(node: Node) -> bool:
    a, b = node.inputs[0], node.inputs[1]
    if not (is_float(a) and is_float(b) and a.dtype == b.dtype and node.output.dtype == a.dtype):
        return False
    if node.op == "linear":
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        return (len(b.shape) == 2 and len(a.shape) >= 1
                and (bias is None or bias.shape == (b.shape[0],)))
    return len(a.shape) >= 2 and len(b.shape) >= 2 and (
        len(b.shape) == 2 or a.shape[:-2] == b.shape[:-2])


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """A float linear/matmul with the chain of pointwise ops after it."""
    return [node, *claims.epilogue(node, pointwise.fusible)] if _fits(node) else None


def _epilogue_inputs(group: KernelGroup) -> list:
    inside = {n.output for n in group.nodes}
    return list(dict.fromkeys(v for node in group.nodes[1:] for v in node.inputs
                              if v is not None and v not in inside))


def emit(group: KernelGroup, device: Device = INTERPRETER) -> KernelSource[MatmulLaunch]:
    """Triton source for a linear/matmul group with its epilogue."""
    interpret = device.interpret
    name = kernel_name(group.name, "matmul")
    mm = group.nodes[0]
    a = mm.inputs[0]
    bias = mm.inputs[2] if mm.op == "linear" and len(mm.inputs) > 2 else None
    out_shape = mm.output.shape
    m = math.prod(out_shape[:-1]) if mm.op == "linear" else out_shape[-2]
    n = out_shape[-1]
    k = a.shape[-1]
    batch = 1 if mm.op == "linear" else math.prod(out_shape[:-2])
    args = {v: f"epi{i}" for i, v in enumerate(_epilogue_inputs(group))}
    args.update({v: f"out{i}" for i, v in enumerate(group.outputs)})
    em = Emitter(args)
    doc_args = {a: "a_ptr", mm.inputs[1]: "b_ptr", **({bias: "bias_ptr"} if bias else {}), **args}
    em.names[mm.output] = reg_name(mm.output)
    pointwise_chain(em, group.nodes[1:], out_shape, "idx", "mask")
    for v in group.outputs:
        em.store(v, "idx", "mask")
    precision = device.dot_precision(a.dtype)
    # the interpreter's tl.dot mishandles bf16 operands (numpy has no bf16): upcast there
    upcast = ".to(tl.float32)" if interpret and a.dtype == torch.bfloat16 else ""
    if upcast:
        precision = ', input_precision="ieee"'
    bias_line = ("    bias = tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)\n"
                 "    acc += bias[None, :]\n" if bias is not None else "")
    body = em.body()
    strides = ["stride_ab", "stride_am", "stride_ak", "stride_bb", "stride_bk", "stride_bn"]
    params = ", ".join(["a_ptr", "b_ptr", *(["bias_ptr"] if bias is not None else []),
                        *args.values(), "M", "N", "K", *strides, *em.sizes.values(),
                        "M_KEY", "N_KEY", "K_KEY",
                        "BLOCK_M: tl.constexpr", "BLOCK_N: tl.constexpr", "BLOCK_K: tl.constexpr"])
    offered, notes = configs(device, a.dtype, m)
    dynamic = is_symbolic((m, n, k, batch)) or bool(em.sizes)
    # symbolic sizes: tune once per power-of-two bucket of the sizes (not per length), and
    # compile once (sizes and strides unspecialized)
    sizes = ["M", "N", "K", *strides, *em.sizes.values(), "M_KEY", "N_KEY", "K_KEY"]
    key = ["M_KEY", "N_KEY", "K_KEY"] if dynamic else ["M", "N", "K"]
    src = (header("matmul", group.name, group.nodes, doc_args) + f"""

@triton.autotune(configs={configs_source(offered)}, key={key!r})
{jit(sizes if dynamic else [])}
def {name}({params}):
    pid = tl.program_id(0)
    bat = tl.program_id(1)
    grid_n = tl.cdiv(N, BLOCK_N)
    rm = (pid // grid_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = (pid % grid_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a_tile = a_ptr + bat * stride_ab + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_tile = b_ptr + bat * stride_bb + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        a_blk = tl.load(a_tile, mask=(rm[:, None] < M) & (rk[None, :] + k0 < K), other=0.0)
        b_blk = tl.load(b_tile, mask=(rk[:, None] + k0 < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(a_blk{upcast}, b_blk{upcast}{precision})
        a_tile += BLOCK_K * stride_ak
        b_tile += BLOCK_K * stride_bk
{bias_line}    {reg_name(mm.output)} = acc
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    idx = bat * M * N + rm[:, None] * N + rn[None, :]
{body}
""")
    return KernelSource(name, src, MatmulLaunch(m, n, k, batch, bias is not None,
                                                tuple(em.sizes)), notes)


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """Autotuned grid over output tiles x batch; ``linear`` reads its ``[N, K]`` weight as
    ``[K, N]`` through the strides. Problem sizes come from the call's tensors, so one
    kernel serves symbolic shapes; the epilogue's size arguments from the call's sizes."""
    assert kernel is not None
    facts: MatmulLaunch = kernel.source.launch
    fn, mm = kernel.fn, group.nodes[0]
    pos = {v: i for i, v in enumerate(group.inputs)}
    a_pos, b_pos = pos[mm.inputs[0]], pos[mm.inputs[1]]
    bias_pos = pos[mm.inputs[2]] if facts.has_bias else None
    epi_pos = [pos[v] for v in _epilogue_inputs(group)]
    linear = mm.op == "linear"
    size_args = (compile_exprs(list(facts.sizes), graph.size_names) if facts.sizes
                 else None)

    def run(ins: list[torch.Tensor], outs: list[torch.Tensor], dims: tuple = ()) -> None:
        a, b = ins[a_pos], ins[b_pos]
        k = a.shape[-1]
        if linear:
            n, batch = b.shape[0], 1
            a = a.reshape(-1, k)
            m = a.shape[0]
            sa = (0, a.stride(0), a.stride(1))
            sb = (0, b.stride(1), b.stride(0))  # weight [N, K] read as [K, N]
        else:
            m, n = a.shape[-2], b.shape[-1]
            batch = a.numel() // (m * k) if m * k else 0
            a = a.reshape(batch, m, k)
            sa = a.stride()
            if b.dim() == 2:
                sb = (0, b.stride(0), b.stride(1))
            else:
                b = b.reshape(batch, k, n)
                sb = b.stride()
        extra = [ins[bias_pos]] if bias_pos is not None else []

        def grid(meta: dict) -> tuple[int, int]:
            return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]), batch)

        fn[grid](a, b, *extra, *[ins[i].contiguous() for i in epi_pos], *outs, m, n, k,
                 *sa, *sb, *dims, triton.next_power_of_2(m), triton.next_power_of_2(n),
                 triton.next_power_of_2(k))
    if size_args is None:
        return run

    def run_sized(sizes: tuple[int, ...], ins: list[torch.Tensor],
                  outs: list[torch.Tensor]) -> None:
        run(ins, outs, size_args(*sizes))
    return sized(run_sized)


KIND = KernelKind("matmul", frozenset({"linear", "matmul"}), claim, launch, emit=emit)
