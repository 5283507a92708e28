"""Token-reduction ops for vision transformers: ToMe bipartite merging and EViT pruning.

Both take tokens x [B, N, C] whose first `protected` tokens (class / distillation tokens) are
kept untouched at the front, plus an optional per-token size [B, N, 1] (how many original
patches a token stands for; None means all ones), and return the reduced tokens and sizes.
The token count of the result depends only on attributes, so shapes stay static.
"""

from __future__ import annotations

import torch

from accel.errors import AccelValueError
from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op
from accel.ir.types import TensorType


def _sizes(x: torch.Tensor, size: torch.Tensor | None) -> torch.Tensor:
    """size, or ones [B, N, 1] in x's dtype."""
    return torch.ones_like(x[..., :1]) if size is None else size


def bipartite_match(metric: torch.Tensor, r: int, protected: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ToMe's bipartite soft matching on `metric` [B, N, D]: which A tokens merge where.

    Non-protected tokens alternate into sets A (even) and B (odd); each A token picks its most
    cosine-similar B token; the r best-scoring A tokens merge. Returns int64 [B, r] `src_idx`
    (A positions merged away), [B, r] `dst_idx` (their B partners) and [B, Na - r] `keep_idx`
    (unmerged A positions, ascending), all indexing within their set.
    """
    m = metric[:, protected:]
    n_a = (m.shape[1] + 1) // 2
    if not 0 <= r <= n_a:
        raise AccelValueError(f"bipartite_merge: r={r} must be in [0, {n_a}] for "
                              f"{metric.shape[1]} tokens with {protected} protected (the tome "
                              f"pass clamps r; a direct caller must pass a smaller r)")
    m = m / m.norm(dim=-1, keepdim=True)
    scores = m[:, ::2] @ m[:, 1::2].transpose(-1, -2)  # [B, Na, Nb]
    best_score, best_dst = scores.max(dim=-1)  # [B, Na]
    order = best_score.argsort(dim=-1, descending=True)
    src_idx = order[:, :r]
    keep_idx = order[:, r:].sort(dim=-1).values
    return src_idx, best_dst.gather(1, src_idx), keep_idx


def bipartite_merge(
    x: torch.Tensor,
    metric: torch.Tensor,
    size: torch.Tensor | None = None,
    *,
    r: int,
    protected: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe bipartite soft matching: merge the r most similar A->B token pairs (size-weighted).

    Matching as in :func:`bipartite_match`; the r chosen A tokens are averaged (weighted by
    size) into their B partners. Output order: protected, unmerged A (original order), B.
    """
    p = protected
    src, dst, keep = bipartite_match(metric, r, p)
    src_idx, dst_idx, keep_idx = src[..., None], dst[..., None], keep[..., None]

    # Only B tokens change value: B' = (x_B s_B + scatter(x_src s_src)) / (s_B + scatter(s_src)).
    # Rows move with index_select / index_add_ on flattened [B*N, C] views (row copies, much
    # faster than element-wise gather/scatter), written straight into the output.
    bsz, n, c = x.shape
    size = _sizes(x, size)
    a_s, b_s = size[:, p::2], size[:, p + 1::2]
    src_s = a_s.gather(1, src_idx)
    merged_s = b_s.scatter_add(1, dst_idx, src_s)
    kept, nb = keep_idx.shape[1], b_s.shape[1]
    n_out = p + kept + nb
    x_rows = x.reshape(bsz * n, c)
    in_base = torch.arange(bsz, device=x.device)[:, None] * n + p  # [B, 1]
    out_base = torch.arange(bsz, device=x.device)[:, None] * n_out + p + kept
    src_x = x_rows.index_select(0, (in_base + 2 * src_idx[..., 0]).flatten())
    out_x = x.new_empty((bsz, n_out, c))
    out_x[:, :p] = x[:, :p]
    out_x[:, p:p + kept] = x_rows.index_select(
        0, (in_base + 2 * keep_idx[..., 0]).flatten()).view(bsz, kept, c)
    out_b = out_x[:, p + kept:]
    torch.mul(x[:, p + 1::2], b_s, out=out_b)
    out_x.view(bsz * n_out, c).index_add_(
        0, (out_base + dst_idx[..., 0]).flatten(), src_x * src_s.reshape(-1, 1))
    out_b.div_(merged_s)
    return out_x, torch.cat([size[:, :p], a_s.gather(1, keep_idx), merged_s], dim=1)


def prune_fuses(n: int, keep: int, protected: int, fuse: bool) -> bool:
    """Whether `attentive_prune` emits a fused token: asked for, and some tokens are pruned."""
    return fuse and n - protected > keep


def attentive_select(cls_attn: torch.Tensor, keep: int, protected: int = 1
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """EViT's selection: (kept [B, keep] ascending, pruned [B, N - p - keep]) token positions
    among the non-protected tokens, by descending class-token attention [B, N]."""
    order = cls_attn[:, protected:].argsort(dim=-1, descending=True)
    return order[:, :keep].sort(dim=-1).values, order[:, keep:]


def attentive_prune(
    x: torch.Tensor,
    cls_attn: torch.Tensor,
    size: torch.Tensor | None = None,
    *,
    keep: int,
    protected: int = 1,
    fuse: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """EViT pruning: keep the `keep` tokens with the highest class-token attention [B, N].

    Kept tokens stay in original order after the protected ones; with `fuse`, the pruned
    tokens are averaged into one extra last token weighted by their attention (its size is
    the sum of their sizes).
    """
    size = _sizes(x, size)
    p = protected
    rest_x, rest_s, attn = x[:, p:], size[:, p:], cls_attn[:, p:]
    keep_idx, drop_idx = attentive_select(cls_attn, keep, p)
    c = x.shape[-1]
    kept_x = rest_x.gather(1, keep_idx[..., None].expand(-1, -1, c))
    kept_s = rest_s.gather(1, keep_idx[..., None])
    parts_x, parts_s = [x[:, :p], kept_x], [size[:, :p], kept_s]
    if fuse:
        w = attn.gather(1, drop_idx)[..., None]  # [B, Nd, 1]
        drop_x = rest_x.gather(1, drop_idx[..., None].expand(-1, -1, c))
        drop_s = rest_s.gather(1, drop_idx[..., None])
        fused = (drop_x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1e-12)
        parts_x.append(fused)
        parts_s.append(drop_s.sum(1, keepdim=True))
    return torch.cat(parts_x, dim=1), torch.cat(parts_s, dim=1)


def _merged_types(x: TensorType, n_out: int) -> tuple[TensorType, TensorType]:
    """Types of (tokens, sizes) with n_out tokens."""
    b, _, c = x.shape
    return (TensorType((b, n_out, c), x.dtype, x.device),
            TensorType((b, n_out, 1), x.dtype, x.device))


def _merge_infer(i, a):  # noqa: ANN001, ANN202
    return _merged_types(i[0], i[0].shape[1] - a["r"])


def _prune_out_tokens(n: int, a) -> int:  # noqa: ANN001
    return a["protected"] + a["keep"] + int(prune_fuses(n, a["keep"], a["protected"], a["fuse"]))


def _prune_infer(i, a):  # noqa: ANN001, ANN202
    return _merged_types(i[0], _prune_out_tokens(i[0].shape[1], a))


def _merge_flops(i, o, a) -> int:  # noqa: ANN001
    b, n, c = i[0].shape
    d = i[1].shape[-1]
    na, nb = (n - a["protected"] + 1) // 2, (n - a["protected"]) // 2
    return b * (3 * n * d + 2 * na * nb * d + 3 * n * c)  # normalise, scores, weighted merge


def _prune_flops(i, o, a) -> int:  # noqa: ANN001
    b, n, c = i[0].shape
    return b * 3 * n * c  # weighted fusion of the dropped tokens


def _prune_ref(x, cls_attn, size=None, *, keep, protected=1, fuse=True):  # noqa: ANN001, ANN202
    fuse = prune_fuses(x.shape[1], keep, protected, fuse)  # nothing pruned: no fused token
    return attentive_prune(x, cls_attn, size, keep=keep, protected=protected, fuse=fuse)


register_op(OpDef(
    "bipartite_merge", ("x", "metric", "size?"), bipartite_merge, OpKind.TOKEN,
    {"r": Attr(int, doc="token pairs merged"),
     "protected": Attr(int, 1, "leading tokens never merged (class, distillation)")},
    infer=_merge_infer, flops=_merge_flops, num_outputs=2,
    doc="ToMe bipartite soft matching: (x [B,N,C], metric [B,N,D], size) -> (x, size), N-r",
))
register_op(OpDef(
    "attentive_prune", ("x", "cls_attn", "size?"), _prune_ref, OpKind.TOKEN,
    {"keep": Attr(int, doc="non-protected tokens kept"),
     "protected": Attr(int, 1, "leading tokens always kept"),
     "fuse": Attr(bool, True, "fuse the pruned tokens into one, weighted by attention")},
    infer=_prune_infer, flops=_prune_flops, num_outputs=2,
    doc="EViT pruning by class-token attention [B,N]: (x, cls_attn, size) -> (x, size)",
))
