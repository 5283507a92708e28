"""Triton kernels for the token-reduction ops (CUDA path of ``bipartite_merge``,
``attentive_prune`` and ``token_transform``; runs on CPU tensors under ``TRITON_INTERPRET=1``
for tests).

Which tokens go where (ToMe's matching, EViT's top-k) stays in torch ops; the kernels do the
data movement as a deterministic gather plus segmented reduce, accumulating in fp32:

* ``bipartite_merge``: every output row has a *base* input row (protected, unmerged A or B
  token) and a segment of merged A sources. The sources are sorted by destination (stable, so
  each segment keeps the reference's accumulation order) and the per-destination segment
  offsets computed in torch. One program per (batch, block of output rows, block of channels)
  copies protected and kept rows and, for B rows, computes
  ``(x_B s_B + Σ x_src s_src) / (s_B + Σ s_src)``; it also writes the output sizes.
  No atomics: the result does not depend on scheduling.
* ``attentive_prune``: the same kernel gathers the kept rows (empty segments); a second kernel
  reduces the pruned rows into the fused token ``Σ x_i a_i / max(Σ a_i, 1e-12)`` with size
  ``Σ s_i``, one program per (batch, block of channels).
* ``token_transform``: the plan (targets, each source's top-k targets and softmax weights) in
  torch, as a dense spread map ``S [B, N', Ns]``; one program per (batch, block of output
  rows, block of channels) computes ``(x_t s_t + Σ_j S[t, j] s_j x_j) / (s_t + Σ_j S[t, j]
  s_j)`` over the Ns sources (protected rows have an all-zero row of S) and the sizes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from accel.backends.triton.kernel import (
    FLOAT_DTYPES,
    Args,
    CompiledKernel,
    KernelGroup,
    KernelKind,
    is_float,
)
from accel.backends.triton.partition import Claims
from accel.backends.triton.record import interpreted, launcher
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Node
from accel.ir.ops.tokens import (
    attentive_select,
    bipartite_match,
    prune_fuses,
    source_map,
    transform_plan,
)
from accel.ir.shapes import is_symbolic


@triton.jit
def _gather_merge_rows(
    x_ptr, size_ptr, base_ptr, lo_ptr, hi_ptr, src_ptr, out_ptr, out_size_ptr,
    n_out, first_merged, num_src, C,
    stride_xb, stride_xn, stride_xc, stride_sb, stride_sn,
    stride_ob, stride_on, stride_oc, stride_osb, stride_osn,
    HAS_SIZE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    rmask = rows < n_out
    cmask = cols < C
    mask2 = rmask[:, None] & cmask[None, :]
    base = tl.load(base_ptr + b * n_out + rows, mask=rmask, other=0)
    lo = tl.load(lo_ptr + b * n_out + rows, mask=rmask, other=0)
    hi = tl.load(hi_ptr + b * n_out + rows, mask=rmask, other=0)
    x_b = x_ptr + b * stride_xb
    xv = tl.load(x_b + base[:, None] * stride_xn + cols[None, :] * stride_xc,
                 mask=mask2, other=0.0).to(tl.float32)
    if HAS_SIZE:
        sv = tl.load(size_ptr + b * stride_sb + base * stride_sn, mask=rmask,
                     other=1.0).to(tl.float32)
    else:
        sv = tl.full((BLOCK_R,), 1.0, tl.float32)
    acc = xv * sv[:, None]
    ssum = sv
    # segmented reduce over the merged sources of each row (empty except for B rows)
    steps = tl.max(hi - lo, axis=0)
    for k in range(0, steps):
        idx = lo + k
        live = rmask & (idx < hi)
        src = tl.load(src_ptr + b * num_src + idx, mask=live, other=0)
        xs = tl.load(x_b + src[:, None] * stride_xn + cols[None, :] * stride_xc,
                     mask=live[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        if HAS_SIZE:
            ss = tl.load(size_ptr + b * stride_sb + src * stride_sn, mask=live,
                         other=0.0).to(tl.float32)
        else:
            ss = tl.where(live, 1.0, 0.0)
        acc += xs * ss[:, None]
        ssum += ss
    merged = (rows >= first_merged) & rmask
    out = tl.where(merged[:, None], acc / ssum[:, None], xv)
    tl.store(out_ptr + b * stride_ob + rows[:, None] * stride_on + cols[None, :] * stride_oc,
             out, mask=mask2)
    if tl.program_id(2) == 0:
        tl.store(out_size_ptr + b * stride_osb + rows * stride_osn, ssum, mask=rmask)


@triton.jit
def _weighted_row_sum(
    x_ptr, size_ptr, rows_ptr, w_ptr, out_ptr, out_size_ptr,
    num_rows, C,
    stride_xb, stride_xn, stride_xc, stride_sb, stride_sn,
    stride_ob, stride_oc, stride_osb,
    HAS_SIZE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    acc = tl.zeros((BLOCK_C,), tl.float32)
    wsum = tl.zeros((BLOCK_R,), tl.float32)
    ssum = tl.zeros((BLOCK_R,), tl.float32)
    for r0 in range(0, num_rows, BLOCK_R):
        idx = r0 + tl.arange(0, BLOCK_R)
        live = idx < num_rows
        row = tl.load(rows_ptr + b * num_rows + idx, mask=live, other=0)
        w = tl.load(w_ptr + b * num_rows + idx, mask=live, other=0.0).to(tl.float32)
        xv = tl.load(x_ptr + b * stride_xb + row[:, None] * stride_xn + cols[None, :] * stride_xc,
                     mask=live[:, None] & cmask[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(xv * w[:, None], axis=0)
        wsum += w
        if HAS_SIZE:
            ssum += tl.load(size_ptr + b * stride_sb + row * stride_sn, mask=live,
                            other=0.0).to(tl.float32)
        else:
            ssum += tl.where(live, 1.0, 0.0)
    total_w = tl.maximum(tl.sum(wsum, axis=0), 1e-12)
    tl.store(out_ptr + b * stride_ob + cols * stride_oc, acc / total_w, mask=cmask)
    if tl.program_id(1) == 0:
        tl.store(out_size_ptr + b * stride_osb, tl.sum(ssum, axis=0))


@triton.jit
def _transform_rows(
    x_ptr, size_ptr, base_ptr, src_ptr, spread_ptr, out_ptr, out_size_ptr,
    n_out, num_src, C,
    stride_xb, stride_xn, stride_xc, stride_sb, stride_sn,
    stride_ob, stride_on, stride_oc, stride_osb, stride_osn,
    HAS_SIZE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    rmask = rows < n_out
    cmask = cols < C
    mask2 = rmask[:, None] & cmask[None, :]
    base = tl.load(base_ptr + b * n_out + rows, mask=rmask, other=0)
    x_b = x_ptr + b * stride_xb
    xv = tl.load(x_b + base[:, None] * stride_xn + cols[None, :] * stride_xc,
                 mask=mask2, other=0.0).to(tl.float32)
    if HAS_SIZE:
        sv = tl.load(size_ptr + b * stride_sb + base * stride_sn, mask=rmask,
                     other=1.0).to(tl.float32)
    else:
        sv = tl.full((BLOCK_R,), 1.0, tl.float32)
    acc = xv * sv[:, None]
    ssum = sv
    for j in range(0, num_src):  # every source, weighted by its spread onto these rows
        src = tl.load(src_ptr + b * num_src + j)
        xs = tl.load(x_b + src * stride_xn + cols * stride_xc, mask=cmask,
                     other=0.0).to(tl.float32)
        if HAS_SIZE:
            ss = tl.load(size_ptr + b * stride_sb + src * stride_sn).to(tl.float32)
        else:
            ss = 1.0
        w = tl.load(spread_ptr + (b * n_out + rows) * num_src + j, mask=rmask,
                    other=0.0).to(tl.float32) * ss
        acc += w[:, None] * xs[None, :]
        ssum += w
    tl.store(out_ptr + b * stride_ob + rows[:, None] * stride_on + cols[None, :] * stride_oc,
             acc / ssum[:, None], mask=mask2)
    if tl.program_id(2) == 0:
        tl.store(out_size_ptr + b * stride_osb + rows * stride_osn, ssum, mask=rmask)


def _blocks(c: int) -> tuple[int, int]:
    """(rows, channels) per program: small under the interpreter, GPU-sized otherwise."""
    interpret = interpreted()
    block_c = min(triton.next_power_of_2(max(c, 1)), 64 if interpret else 256)
    return (16 if interpret else 32), block_c


def _size_rows(x: torch.Tensor, size: torch.Tensor | None) -> torch.Tensor:
    """size broadcast to [B, N, 1]; without sizes, x itself (a placeholder the kernels never
    read: HAS_SIZE is false)."""
    return size.expand(x.shape[0], x.shape[1], 1) if size is not None else x


def _results(op: str, x: torch.Tensor, n_out: int, out: torch.Tensor | None,
             out_size: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (tokens, sizes) result buffers: new ones, or the caller's after a shape check
    (the kernels write through raw pointers, so a wrong buffer would be written out of
    bounds)."""
    bsz, _, c = x.shape
    want = {"out": ((bsz, n_out, c), out), "out_size": ((bsz, n_out, 1), out_size)}
    for name, (shape, t) in want.items():
        if t is not None and (tuple(t.shape) != shape or t.dtype != x.dtype
                              or t.device != x.device):
            raise AccelValueError(f"{op} kernel: {name} is {tuple(t.shape)} {t.dtype} on "
                                  f"{t.device}, expected {shape} {x.dtype} on {x.device}")
    return (x.new_empty((bsz, n_out, c)) if out is None else out,
            x.new_empty((bsz, n_out, 1)) if out_size is None else out_size)


def gather_merge_rows(x: torch.Tensor, size: torch.Tensor | None, base: torch.Tensor,
                      lo: torch.Tensor, hi: torch.Tensor, src: torch.Tensor, first_merged: int,
                      out: torch.Tensor, out_size: torch.Tensor) -> None:
    """``out[b, o] = x[b, base]`` for ``o < first_merged``, else the size-weighted mean of
    ``x[b, base]`` and ``x[b, src[b, lo:hi]]``; ``out_size`` gets the summed sizes.

    ``base``/``lo``/``hi`` are int32 ``[B, n_out]``, ``src`` int32 ``[B, S]`` (token rows of
    ``x`` sorted by destination), ``out`` ``[B, n_out, C]`` and ``out_size`` ``[B, n_out, 1]``.
    """
    bsz, _, c = x.shape
    n_out, num_src = base.shape[1], src.shape[1]
    sz = _size_rows(x, size)
    block_r, block_c = _blocks(c)
    grid = (bsz, triton.cdiv(n_out, block_r), triton.cdiv(c, block_c))
    launcher(_gather_merge_rows)[grid](
        x, sz, base, lo, hi, src if num_src else base, out, out_size,
        n_out, first_merged, num_src, c, *x.stride(), sz.stride(0), sz.stride(1),
        *out.stride(), out_size.stride(0), out_size.stride(1),
        HAS_SIZE=size is not None, BLOCK_R=block_r, BLOCK_C=block_c,
    )


def bipartite_merge(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor | None = None,
                    *, r: int, protected: int = 1, out: torch.Tensor | None = None,
                    out_size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``bipartite_merge`` with the merge on the Triton kernel (matching in torch).

    Same result layout as :func:`accel.ir.ops.tokens.bipartite_merge`: protected, unmerged A
    (original order), B. ``out``/``out_size`` are optional preallocated results.
    """
    bsz, n, c = x.shape
    p, dev = protected, x.device
    src_idx, dst_idx, keep_idx = bipartite_match(metric, r, p)
    kept, nb = keep_idx.shape[1], (n - p) // 2
    n_out = p + kept + nb
    # base row of each output token, in x's token numbering
    base = torch.cat([torch.arange(p, device=dev).expand(bsz, p), p + 2 * keep_idx,
                      (p + 1 + 2 * torch.arange(nb, device=dev)).expand(bsz, nb)], dim=1)
    # merged sources sorted by destination (stable: reference order within a segment)
    order = dst_idx.argsort(dim=1, stable=True)
    src_rows = p + 2 * src_idx.gather(1, order)
    counts = torch.zeros(bsz, nb, dtype=torch.int64, device=dev).scatter_add_(
        1, dst_idx, torch.ones_like(dst_idx))
    hi_b = counts.cumsum(dim=1)
    lo = torch.zeros(bsz, n_out, dtype=torch.int32, device=dev)
    hi = torch.zeros(bsz, n_out, dtype=torch.int32, device=dev)
    lo[:, p + kept:] = hi_b - counts
    hi[:, p + kept:] = hi_b
    out, out_size = _results("bipartite_merge", x, n_out, out, out_size)
    gather_merge_rows(x, size, base.to(torch.int32).contiguous(), lo, hi,
                      src_rows.to(torch.int32).contiguous(), p + kept, out, out_size)
    return out, out_size


def attentive_prune(x: torch.Tensor, cls_attn: torch.Tensor, size: torch.Tensor | None = None,
                    *, keep: int, protected: int = 1, fuse: bool = True,
                    out: torch.Tensor | None = None, out_size: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``attentive_prune`` on the Triton kernels (top-k selection in torch).

    Kept rows are gathered in original order after the protected ones; with ``fuse`` (and
    tokens pruned) the last row is the attention-weighted mean of the pruned rows.
    """
    bsz, n, c = x.shape
    p, dev = protected, x.device
    fuse = prune_fuses(n, keep, p, fuse)
    n_out = p + keep + (1 if fuse else 0)
    keep_idx, drop_idx = attentive_select(cls_attn, keep, p)
    base = torch.cat([torch.arange(p, device=dev).expand(bsz, p), p + keep_idx], dim=1)
    base = base.to(torch.int32).contiguous()
    zeros = torch.zeros_like(base)
    out, out_size = _results("attentive_prune", x, n_out, out, out_size)
    gather_merge_rows(x, size, base, zeros, zeros, base[:, :0], p + keep, out, out_size)
    if fuse:
        rows = (p + drop_idx).to(torch.int32).contiguous()
        w = cls_attn[:, p:].gather(1, drop_idx).contiguous()
        sz = _size_rows(x, size)
        block_r, block_c = _blocks(c)
        fused, fused_size = out[:, n_out - 1], out_size[:, n_out - 1]
        launcher(_weighted_row_sum)[(bsz, triton.cdiv(c, block_c))](
            x, sz, rows, w, fused, fused_size, rows.shape[1], c, *x.stride(),
            sz.stride(0), sz.stride(1), fused.stride(0), fused.stride(1), fused_size.stride(0),
            HAS_SIZE=size is not None, BLOCK_R=block_r, BLOCK_C=block_c,
        )
    return out, out_size


def token_transform(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor | None = None,
                    importance: torch.Tensor | None = None, *, keep: int, protected: int = 1,
                    select: str = "attention", k: int = 4, tau: float = 0.1,
                    out: torch.Tensor | None = None, out_size: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_transform`` with the transform on the Triton kernel (plan in torch).

    Same result as :func:`accel.ir.ops.tokens.token_transform`: protected tokens, then the
    targets, each the size-weighted mean of itself and the sources spread onto it.
    """
    bsz, n, c = x.shape
    p, dev = protected, x.device
    plan = transform_plan(metric, importance, keep=keep, protected=p, select=select, k=k,
                          tau=tau)
    nt, ns = plan.targets.shape[1], plan.sources.shape[1]
    n_out = p + nt
    base = torch.cat([torch.arange(p, device=dev).expand(bsz, p), plan.targets], dim=1)
    spread = torch.zeros(bsz, n_out, ns, dtype=torch.float32, device=dev)
    spread[:, p:] = source_map(plan, nt, torch.float32)
    out, out_size = _results("token_transform", x, n_out, out, out_size)
    sz = _size_rows(x, size)
    block_r, block_c = _blocks(c)
    grid = (bsz, triton.cdiv(n_out, block_r), triton.cdiv(c, block_c))
    src = plan.sources.to(torch.int32).contiguous()
    launcher(_transform_rows)[grid](
        x, sz, base.to(torch.int32).contiguous(), src if ns else base, spread.contiguous(),
        out, out_size, n_out, ns, c, *x.stride(), sz.stride(0), sz.stride(1), *out.stride(),
        out_size.stride(0), out_size.stride(1),
        HAS_SIZE=size is not None, BLOCK_R=block_r, BLOCK_C=block_c,
    )
    return out, out_size


TOKEN_KERNELS = {"bipartite_merge": bipartite_merge, "attentive_prune": attentive_prune,
                 "token_transform": token_transform}
"""The token-reduction ops the kernels run, by op name."""


def token_node_fn(node: Node) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """Step function ``(x, metric_or_attn, size?, importance?, out=, out_size=) -> (x, size)``
    for a ``bipartite_merge``, ``attentive_prune`` or ``token_transform`` node."""
    if node.op not in TOKEN_KERNELS:
        raise AccelValueError(f"token kernel: node {node.name} is '{node.op}', expected one of "
                              f"{sorted(TOKEN_KERNELS)}")
    attrs = dict(node.attrs)
    fn = TOKEN_KERNELS[node.op]

    def run(x: torch.Tensor, guide: torch.Tensor, *rest: torch.Tensor | None,
            out: torch.Tensor | None = None, out_size: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        return fn(x, guide, *rest, **attrs, out=out, out_size=out_size)
    return run


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """Float tokens [B, N, C], guide [B, N, D] (merge, transform) or [B, N] (prune), sizes
    [B, N, 1], importance [B, N] (transform)."""
    x, guide = node.inputs[0], node.inputs[1]
    size = node.inputs[2] if len(node.inputs) > 2 else None
    if not (x.dtype in FLOAT_DTYPES and guide.dtype in FLOAT_DTYPES and is_float(size)
            and len(x.shape) == 3 and all(o.dtype == x.dtype for o in node.outputs)):
        return None
    b, n, _ = x.shape
    if is_symbolic(n):
        return None  # the token count is a static plan (a symbolic batch is fine)
    p = node.attrs.get("protected", 1)
    if size is not None and size.shape != (b, n, 1):
        return None
    if node.op == "bipartite_merge":
        ok = (len(guide.shape) == 3 and guide.shape[:2] == (b, n)
              and 0 <= p <= n and 0 <= node.attrs["r"] <= (n - p + 1) // 2)
    elif node.op == "token_transform":
        imp = node.inputs[3] if len(node.inputs) > 3 else None
        keep, select = node.attrs["keep"], node.attrs["select"]
        ok = (len(guide.shape) == 3 and guide.shape[:2] == (b, n) and 0 <= p <= n
              and (0 <= n - p - keep <= (n - p + 1) // 2 if select == "bipartite" else
                   imp is not None and imp.shape == (b, n) and is_float(imp)
                   and 1 <= keep <= n - p))
    else:
        ok = len(guide.shape) == 2 and guide.shape == (b, n) and 0 <= node.attrs["keep"] <= n - p
    return [node] if ok else None


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """Runs the node into its planned outputs (scratch for an output nobody reads)."""
    (node,) = group.nodes
    run = token_node_fn(node)
    where = [group.outputs.index(o) if o in group.outputs else None for o in node.outputs]

    def step(ins: list, outs: list[torch.Tensor]) -> None:
        out, out_size = (outs[i] if i is not None else None for i in where)
        run(*ins, out=out, out_size=out_size)
    return step


KIND = KernelKind("token", frozenset(TOKEN_KERNELS), claim, launch, args=Args.NODE)
