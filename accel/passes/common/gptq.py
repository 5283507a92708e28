"""Second-order weight compression of one linear: GPTQ quantization and SparseGPT 2:4 pruning.

Both minimise a layer's output error ``‖XWᵀ − XŴᵀ‖²`` on calibration inputs ``X`` using only
the Hessian ``H = 2/n·XᵀX`` (:class:`accel.calibration.HessianObserver`), one column of
``W [N, K]`` at a time: a column is rounded (GPTQ, arXiv 2210.17323) or partly zeroed
(SparseGPT, arXiv 2301.00774), and its error ``e`` is pushed into the columns not yet
visited through the optimal-brain-surgeon update ``W[:, j] -= e · U[i, j] / U[i, i]``, where
``U`` is the upper Cholesky factor of ``H⁻¹`` (row ``i`` of ``U`` is ``H⁻¹``'s row after
eliminating the columns before ``i``, so no inverse is recomputed during the sweep).

Steps, as in the papers:

1. *dead columns*: an input feature that is always 0 in calibration (``H[i, i] == 0``)
   gets ``H[i, i] = 1`` and a zero weight column (it never contributes);
2. *damping*: ``H += damp · mean(diag H) · I`` (``damp=0.01``) keeps the inverse stable;
3. ``U = cholesky(H⁻¹, upper)``;
4. *blocked sweep*: columns are visited in blocks of ``block`` (128): inside a block the
   update is applied column by column, to the block only; the block's accumulated errors
   reach all later columns in one matmul (``W[:, i2:] -= E · U[i1:i2, i2:]``). This is the
   same arithmetic as the column-by-column algorithm, reordered (tests check it against an
   unblocked reference).

GPTQ's quantization grid is the one :func:`accel.ir.ops.quant.quantize_grouped` makes (and
``linear_weight_only`` runs): symmetric, ``scale = max|w| / qmax`` per row and per group of
``group_size`` consecutive input channels (int4: values in [-8, 7]; ``group_size=K``: one
scale per row, as int8-weight-only stores it). A group's scales are computed when the sweep
reaches the group's first column, from the weights as updated so far. With ``act_order``
(columns visited by descending ``diag(H)``, the most-used inputs first; un-permuted after)
the groups stay contiguous in the original order, so that the stored format is unchanged; a
group is then not reached all at once, and its scales are computed before the sweep from the
original weights (AutoGPTQ's "static groups").

A fixed keep-mask (the 2:4 pattern of a weight ``sparsify`` pruned) composes with GPTQ as
*quantize, then re-apply the mask*: each column is quantized, its masked entries are set to
0, and the whole error — including whatever compensation earlier columns had pushed into
masked entries — is propagated to the later columns. Compensation does flow through masked
entries on the way, but every masked entry is zeroed when its column is reached, so the
result is exactly as sparse as the mask (scales are computed over kept entries only).

Cost: one ``[K, K]`` Cholesky and inverse per layer plus ``2·N·K²`` multiply-adds of
updates (most in the per-block matmuls); on CPU in float32 this is seconds for a MiniLM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from accel.errors import AccelValueError


def _prepare(w: torch.Tensor, h: torch.Tensor, damp: float, name: str,
             dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W with dead columns zeroed, upper Cholesky factor of the damped H⁻¹)``."""
    if damp < 0:
        raise AccelValueError(f"{name}: damp must be >= 0, got {damp}")
    w = w.to(dtype).clone()
    h = h.to(torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(damp * torch.diag(h).mean())
    chol, info = torch.linalg.cholesky_ex(h)
    if info.item() != 0:
        raise AccelValueError(f"{name}: the damped Hessian is not positive definite; raise "
                              f"damp (now {damp}) or give more calibration data")
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    # H⁻¹ by cholesky_solve: on CPU several times faster than torch.cholesky_inverse
    u = torch.linalg.cholesky(torch.cholesky_solve(eye, chol), upper=True)
    return w, u.to(dtype)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the column sweep on one intra-op thread: it is thousands of small ops, and on
    more threads each pays a fork/join (measured 3x to 100x slower on a busy 2-core host)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def block_for(block: int, group: int) -> int:
    """A block size near ``block`` that never splits a quantization group across blocks:
    a multiple of ``group`` when ``group <= block``, else a divisor of ``group``."""
    if block < 1:
        raise AccelValueError(f"block must be >= 1, got {block}")
    if group <= block:
        return block // group * group
    return max(d for d in range(1, block + 1) if group % d == 0)


MSE_SHRINK = tuple(1.0 - 0.02 * i for i in range(26))
"""Clip ratios the ``mse`` scale search tries: ``scale = r · max|w| / qmax``, r in 1.0..0.5."""


def group_scale(cols: torch.Tensor, keep: torch.Tensor | None, qmax: int,
                search: str = "absmax") -> torch.Tensor:
    """Per-row symmetric scale of a group of columns ``[N, g]`` (kept entries only).

    ``absmax``: ``max|w| / qmax`` (``quantize_grouped``'s). ``mse``: the clip ratio of
    :data:`MSE_SHRINK` whose rounding error ``Σ (w − s·clamp(round(w / s)))²`` over the row's
    group is least: for int4 a slightly clipped range rounds the many small weights more
    finely at the cost of the few largest (the grid search of GPTQ's and AWQ's reference
    implementations; the format stays symmetric)."""
    if keep is not None:
        cols = cols * keep
    top = cols.abs().amax(dim=1).clamp_min(1e-12) / qmax
    if search == "absmax":
        return top
    if search != "mse":
        raise AccelValueError(f"scale search must be 'absmax' or 'mse', got {search!r}")
    ratios = torch.tensor(MSE_SHRINK, dtype=cols.dtype)
    s = top.unsqueeze(0) * ratios.unsqueeze(1)  # [R, N]
    q = torch.round(cols.unsqueeze(0) / s.unsqueeze(2)).clamp_(-qmax - 1, qmax)
    err = (cols.unsqueeze(0) - q * s.unsqueeze(2)).square().sum(2)  # [R, N]
    return s.gather(0, err.argmin(0, keepdim=True)).squeeze(0)


def gptq(w: torch.Tensor, h: torch.Tensor, *, bits: int, group_size: int = 0,
         damp: float = 0.01, block: int = 128, act_order: bool = False,
         keep: torch.Tensor | None = None, name: str = "gptq",
         dtype: torch.dtype = torch.float32, scale_search: str = "absmax",
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ of a ``[N, K]`` weight with input Hessian ``h [K, K]``.

    Returns ``(q int8 [N, K], scales float32 [N, K / group])``, ``quantize_grouped``'s format
    (``group_size=0``: one group per row, scales ``[N, 1]``). ``keep`` (bool ``[N, K]``) is
    a fixed sparsity mask the result keeps (zeros outside it). ``dtype`` is the sweep's
    arithmetic (the inverse Hessian is always formed in float64). ``scale_search``: how a
    group's scale is chosen (:func:`group_scale`).
    """
    n, k = w.shape
    g = group_size or k
    if k % g:
        raise AccelValueError(f"{name}: group_size {g} does not divide K={k}")
    qmax = 2 ** (bits - 1) - 1
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(k)
    w, u = _prepare(w[:, perm], h[perm][:, perm], damp, name, dtype)
    keep = None if keep is None else keep[:, perm]
    scales = torch.zeros(n, k // g, dtype=dtype)
    if act_order:  # static groups: scales from the original weights (see the module doc)
        w_orig = w[:, torch.argsort(perm)]
        keep_orig = None if keep is None else keep[:, torch.argsort(perm)]
        for j in range(k // g):
            cols = slice(j * g, (j + 1) * g)
            scales[:, j] = group_scale(w_orig[:, cols], None if keep is None
                                       else keep_orig[:, cols], qmax, scale_search)
    group_of = perm // g  # each visited column's group, numbered in the original order
    q = torch.zeros(n, k, dtype=torch.int8)
    bsize = block if act_order else block_for(block, g)
    with one_thread():  # the sweep: many small ops
        for i1 in range(0, k, bsize):
            i2 = min(i1 + bsize, k)
            w1 = w[:, i1:i2].clone()  # this block's columns, updated column by column
            err = torch.zeros_like(w1)
            for i in range(i2 - i1):
                col = i1 + i
                if not act_order and col % g == 0:  # a group starts: its scales, from now
                    # a group lies inside the block, or starts it (then w is up to date)
                    cols = w1[:, i:i + g] if i + g <= i2 - i1 else w[:, col:col + g]
                    scales[:, col // g] = group_scale(cols, None if keep is None
                                                      else keep[:, col:col + g], qmax,
                                                      scale_search)
                s = scales[:, group_of[col]]
                x = w1[:, i]
                qi = torch.round(x / s).clamp_(-qmax - 1, qmax)
                if keep is not None:
                    qi = qi * keep[:, col]
                q[:, col] = qi.to(torch.int8)
                e = (x - qi * s) / u[col, col]
                w1[:, i:] -= e.unsqueeze(1) * u[col, col:i2].unsqueeze(0)
                err[:, i] = e
            w[:, i2:] -= err @ u[i1:i2, i2:]  # the block's errors reach every later column
    return q[:, torch.argsort(perm)], scales.float()


def sparsegpt_2_4(w: torch.Tensor, h: torch.Tensor, *, damp: float = 0.01, block: int = 128,
                  n_prune: int = 2, m: int = 4, name: str = "sparsegpt",
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT ``n:m`` pruning (2 of every 4 consecutive inputs zeroed) of ``w [N, K]``.

    When the sweep reaches the first column of a group of ``m``, the ``n_prune`` entries per
    row with the lowest saliency ``w² / U[j, j]²`` (the OBS error of removing ``w`` given the
    columns already fixed) are chosen from the *updated* weights; then each column is pruned
    and its error compensated in the later columns. Returns ``(pruned weight in w's dtype,
    keep mask)``; the mask has exactly ``m - n_prune`` kept entries in every group.
    """
    rows, k = w.shape
    if k % m:
        raise AccelValueError(f"{name}: K={k} is not divisible by {m}")
    out_dtype = w.dtype
    w, u = _prepare(w, h, damp, name, dtype)
    keep = torch.ones(rows, k, dtype=torch.bool)
    bsize = block_for(block, m)
    with one_thread():  # the sweep: many small ops
        for i1 in range(0, k, bsize):
            i2 = min(i1 + bsize, k)
            w1 = w[:, i1:i2].clone()
            err = torch.zeros_like(w1)
            d = torch.diag(u)[i1:i2]
            for i in range(i2 - i1):
                col = i1 + i
                if i % m == 0:
                    saliency = w1[:, i:i + m].square() / d[i:i + m].square()
                    drop = saliency.topk(n_prune, dim=1, largest=False).indices
                    keep[:, col:col + m].scatter_(1, drop, False)
                x = w1[:, i]
                p = x * keep[:, col]
                w[:, col] = p
                e = (x - p) / u[col, col]
                w1[:, i:] -= e.unsqueeze(1) * u[col, col:i2].unsqueeze(0)
                err[:, i] = e
            w[:, i2:] -= err @ u[i1:i2, i2:]
    return (w * keep).to(out_dtype), keep
