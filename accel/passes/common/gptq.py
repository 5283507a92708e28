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

GPTQ's quantization grid is :func:`group_grid`'s, per row and per group of ``group_size``
consecutive input channels (``group_size=K``: one group per row, as int8-weight-only stores
it): symmetric (``scale = max|w| / qmax``, :func:`accel.ir.ops.quant.quantize_grouped`'s,
int4 values in [-8, 7]) or asymmetric (16 levels over the group's ``[min, max]`` with an
integer zero point ``z``: the weight is ``(q − z)·s``, what ``linear_weight_only`` runs with
its ``zeros`` input), either with its full range or with the clip of it that rounds the
group best (``scale_search="mse"``). A group's grid is computed when the sweep reaches the
group's first column, from the weights as updated so far. With ``act_order``
(columns visited by descending ``diag(H)``, the most-used inputs first; un-permuted after)
the groups stay contiguous in the original order, so that the stored format is unchanged; a
group is then not reached all at once, and its grid is computed before the sweep from the
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
"""Clip ratios the ``mse`` scale search tries (``r · range``, r from 1.0 down to 0.5)."""


def group_grid(cols: torch.Tensor, keep: torch.Tensor | None, bits: int,
               search: str = "absmax", symmetric: bool = True,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(scale, zero)`` of a group of columns ``[N, g]`` (kept entries only).

    Values are stored as ``q = clamp(round(w / s) + z, -2^(b-1), 2^(b-1) - 1)`` and read as
    ``(q - z) · s``. Symmetric: ``z = 0`` and ``s = max|w| / (2^(b-1) - 1)``
    (``quantize_grouped``'s grid). Asymmetric: the ``2^b`` levels span ``[min(w, 0),
    max(w, 0)]``, ``s = range / (2^b - 1)``, with an integer zero point (so 0 stays exact:
    a pruned weight's zeros survive); a group whose weights are not centred on 0 gets up to
    twice the resolution.

    ``search="mse"``: the range is also shrunk by each ratio of :data:`MSE_SHRINK` and the
    one with the least rounding error ``Σ (w − (q − z)·s)²`` over the row's group is kept: a
    slightly clipped range rounds the many small weights more finely at the cost of the few
    largest (the grid search of GPTQ's and AWQ's reference implementations).
    """
    if search not in ("absmax", "mse"):
        raise AccelValueError(f"scale search must be 'absmax' or 'mse', got {search!r}")
    if keep is not None:
        cols = cols * keep
    lo_q, hi_q = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if symmetric:
        top = cols.abs().amax(dim=1).clamp_min(1e-12) / hi_q
        lo = hi = None
    else:
        lo = cols.amin(dim=1).clamp_max(0.0)
        hi = cols.amax(dim=1).clamp_min(0.0)
        top = (hi - lo).clamp_min(1e-12) / (hi_q - lo_q)
    ratios = torch.tensor(MSE_SHRINK if search == "mse" else (1.0,), dtype=cols.dtype)
    s = top.unsqueeze(0) * ratios.unsqueeze(1)  # [R, N]
    if symmetric:
        z = torch.zeros_like(s)
    else:
        z = (lo_q - torch.round(lo.unsqueeze(0) * ratios.unsqueeze(1) / s)).clamp_(lo_q, hi_q)
    if search == "absmax":
        return s[0], z[0]
    q = quantize_cols(cols.unsqueeze(0), s.unsqueeze(2), z.unsqueeze(2), bits)
    err = (cols.unsqueeze(0) - (q - z.unsqueeze(2)) * s.unsqueeze(2)).square().sum(2)
    best = err.argmin(0, keepdim=True)  # [1, N]
    return s.gather(0, best).squeeze(0), z.gather(0, best).squeeze(0)


def quantize_cols(x: torch.Tensor, s: torch.Tensor, z: torch.Tensor, bits: int) -> torch.Tensor:
    """``clamp(round(x / s) + z)`` on the signed ``bits`` grid (float result)."""
    return (torch.round(x / s) + z).clamp_(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def gptq(w: torch.Tensor, h: torch.Tensor, *, bits: int, group_size: int = 0,
         damp: float = 0.01, block: int = 128, act_order: bool = False,
         keep: torch.Tensor | None = None, name: str = "gptq",
         dtype: torch.dtype = torch.float32, scale_search: str = "absmax",
         symmetric: bool = True,
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """GPTQ of a ``[N, K]`` weight with input Hessian ``h [K, K]``.

    Returns ``(q int8 [N, K], scales float32 [N, K / group], zeros)``: ``quantize_grouped``'s
    format (``group_size=0``: one group per row, scales ``[N, 1]``); ``zeros`` is ``None``
    when ``symmetric``, else the int8 zero points ``[N, K / group]`` (weight ``(q - z)·s``).
    ``keep`` (bool ``[N, K]``) is a fixed sparsity mask the result keeps (zeros outside
    it). ``dtype`` is the sweep's arithmetic (the inverse Hessian is always formed in
    float64). ``scale_search`` and ``symmetric``: how a group's grid is chosen
    (:func:`group_grid`).
    """
    n, k = w.shape
    g = group_size or k
    if k % g:
        raise AccelValueError(f"{name}: group_size {g} does not divide K={k}")
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(k)
    w, u = _prepare(w[:, perm], h[perm][:, perm], damp, name, dtype)
    keep = None if keep is None else keep[:, perm]
    scales = torch.zeros(n, k // g, dtype=dtype)
    zeros = torch.zeros(n, k // g, dtype=dtype)

    def grid(cols: torch.Tensor, kept: torch.Tensor | None, j: int) -> None:
        scales[:, j], zeros[:, j] = group_grid(cols, kept, bits, scale_search, symmetric)

    if act_order:  # static groups: scales from the original weights (see the module doc)
        w_orig = w[:, torch.argsort(perm)]
        keep_orig = None if keep is None else keep[:, torch.argsort(perm)]
        for j in range(k // g):
            cols = slice(j * g, (j + 1) * g)
            grid(w_orig[:, cols], None if keep is None else keep_orig[:, cols], j)
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
                    grid(cols, None if keep is None else keep[:, col:col + g], col // g)
                s, z = scales[:, group_of[col]], zeros[:, group_of[col]]
                x = w1[:, i]
                qi = quantize_cols(x, s, z, bits)
                if keep is not None:  # a masked entry stores the zero point: exactly 0
                    qi = torch.where(keep[:, col], qi, z)
                q[:, col] = qi.to(torch.int8)
                e = (x - (qi - z) * s) / u[col, col]
                w1[:, i:] -= e.unsqueeze(1) * u[col, col:i2].unsqueeze(0)
                err[:, i] = e
            w[:, i2:] -= err @ u[i1:i2, i2:]  # the block's errors reach every later column
    return (q[:, torch.argsort(perm)], scales.float(),
            None if symmetric else zeros.to(torch.int8))


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
