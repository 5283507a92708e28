"""Token-reduction ops for vision transformers: ToMe bipartite merging, EViT pruning and
Token Transforming (many-to-many token matrix transformation).

All take tokens x [B, N, C] whose first `protected` tokens (class / distillation tokens) are
kept untouched at the front, plus an optional per-token size [B, N, 1] (how many original
patches a token stands for; None means all ones), and return the reduced tokens and sizes.
The token count of the result depends only on attributes, so shapes stay static.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from accel.errors import AccelValueError
from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op
from accel.ir.types import TensorType

TRANSFORM_SELECT = ("attention", "bipartite")
"""How `token_transform` picks its target tokens: by importance (class-token attention), or
ToMe's bipartite split (the sources are the A tokens with the best match in B)."""


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


@dataclass(frozen=True)
class TransformPlan:
    """Which tokens `token_transform` keeps (targets) and how the others (sources) spread over
    them. Positions index the token axis of x; `dst` indexes `targets`."""

    targets: torch.Tensor
    """int64 [B, Nt]: the kept non-protected tokens, in output order."""
    sources: torch.Tensor
    """int64 [B, Ns]: the tokens transformed into the targets (Ns = N - protected - Nt)."""
    dst: torch.Tensor
    """int64 [B, Ns, k]: for each source, its k most similar candidate targets."""
    weight: torch.Tensor
    """[B, Ns, k]: softmax(similarity / tau) over those k (each source's weights sum to 1)."""


def _normalized(m: torch.Tensor) -> torch.Tensor:
    """Rows of m scaled to unit L2 norm (cosine similarity by matmul), computed in fp32."""
    m = m.float()
    return m / m.norm(dim=-1, keepdim=True)


def transform_plan(metric: torch.Tensor, importance: torch.Tensor | None, *, keep: int,
                   protected: int = 1, select: str = "attention", k: int = 4,
                   tau: float = 0.1) -> TransformPlan:
    """Token Transforming's plan on `metric` [B, N, D] (and `importance` [B, N]).

    select="attention": the `keep` non-protected tokens of highest importance are the targets
    (original order); every other non-protected token is a source whose candidates are all
    targets. select="bipartite": ToMe's split — non-protected tokens alternate into A (even)
    and B (odd), the N - p - keep A tokens whose best cosine match in B is highest are the
    sources, the candidates are the B tokens, and the targets are the unmerged A tokens then
    B (the layout of `bipartite_merge`). Each source then spreads over its min(k, candidates)
    most cosine-similar candidates with weights softmax(similarity / tau).
    """
    p = protected
    bsz, n, _ = metric.shape
    n_src = n - p - keep
    if select not in TRANSFORM_SELECT:
        raise AccelValueError(f"token_transform: select={select!r} must be one of "
                              f"{', '.join(TRANSFORM_SELECT)}")
    if k < 1 or not tau > 0:
        raise AccelValueError(f"token_transform: k={k} must be >= 1 and tau={tau} > 0")
    m = _normalized(metric)
    if select == "bipartite":
        n_a = (n - p + 1) // 2
        if not 0 <= n_src <= n_a:
            raise AccelValueError(f"token_transform: keep={keep} must be in [{n - p - n_a}, "
                                  f"{n - p}] for select='bipartite' ({n} tokens, {p} "
                                  f"protected: at most the {n_a} A tokens are sources)")
        src, _, kept = bipartite_match(metric, n_src, p)
        m_a, m_b = m[:, p::2], m[:, p + 1::2]
        nb = m_b.shape[1]
        sim = m_a.gather(1, src[..., None].expand(-1, -1, m.shape[-1])) @ m_b.transpose(1, 2)
        targets = torch.cat([p + 2 * kept, (p + 1 + 2 * torch.arange(nb, device=m.device))
                             .expand(bsz, nb)], dim=1)
        sources, offset = p + 2 * src, kept.shape[1]  # candidates are the targets after A
    else:
        if importance is None:
            raise AccelValueError("token_transform: select='attention' needs the importance "
                                  "input (class-token attention [B, N])")
        if not 1 <= keep <= n - p:
            raise AccelValueError(f"token_transform: keep={keep} must be in [1, {n - p}] for "
                                  f"{n} tokens with {p} protected")
        order = importance[:, p:].float().argsort(dim=-1, descending=True)
        targets = p + order[:, :keep].sort(dim=-1).values
        sources, offset = p + order[:, keep:], 0
        d = m.shape[-1]
        sim = (m.gather(1, sources[..., None].expand(-1, -1, d))
               @ m.gather(1, targets[..., None].expand(-1, -1, d)).transpose(1, 2))
    best, dst = sim.topk(min(k, sim.shape[-1]), dim=-1)  # [B, Ns, k], most similar first
    weight = (best / tau).softmax(dim=-1).to(metric.dtype)
    return TransformPlan(targets, sources, dst + offset, weight)


def source_map(plan: TransformPlan, n_targets: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, Nt, Ns]: entry (t, j) is source j's weight on target t (0 where t is not one of
    its k): the source columns of the token matrix W."""
    bsz, n_src, _ = plan.dst.shape
    spread = plan.weight.new_zeros((bsz, n_src, n_targets), dtype=dtype)
    return spread.scatter_(2, plan.dst, plan.weight.to(dtype)).transpose(1, 2)


def transform_matrix(metric: torch.Tensor, importance: torch.Tensor | None = None, *,
                     keep: int, protected: int = 1, select: str = "attention", k: int = 4,
                     tau: float = 0.1) -> torch.Tensor:
    """The token matrix W [B, p + keep, N] of `token_transform` (protected and target rows
    hold a 1 at their own token, source columns their softmax weights): the op returns
    (W @ (x * size)) / (W @ size) and sizes W @ size. For reading and tests; the op itself
    never builds the dense matrix."""
    plan = transform_plan(metric, importance, keep=keep, protected=protected, select=select,
                          k=k, tau=tau)
    bsz, n, _ = metric.shape
    p, nt = protected, plan.targets.shape[1]
    w = metric.new_zeros((bsz, p + nt, n))
    rows = torch.arange(p + nt, device=metric.device).expand(bsz, -1)
    own = torch.cat([torch.arange(p, device=metric.device).expand(bsz, p), plan.targets], 1)
    w[torch.arange(bsz)[:, None], rows, own] = 1.0
    src_cols = source_map(plan, nt, metric.dtype)  # [B, Nt, Ns]
    w[:, p:].scatter_(2, plan.sources[:, None, :].expand(-1, nt, -1), src_cols)
    return w


def token_transform(
    x: torch.Tensor,
    metric: torch.Tensor,
    size: torch.Tensor | None = None,
    importance: torch.Tensor | None = None,
    *,
    keep: int,
    protected: int = 1,
    select: str = "attention",
    k: int = 4,
    tau: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token Transforming (arXiv 2506.05709): x' = (W @ (x·size)) / (W @ size), size' = W @ size,
    with W [B, p + keep, N] from :func:`transform_plan` (see :func:`transform_matrix`).

    Each kept token adds the size-weighted contributions of the sources that chose it; each
    source spreads over up to k targets (many-to-many), so no token is dropped and the sizes
    still sum to N. Computed without the dense matrix: the identity part is a gather, the
    source part a [Nt, Ns] @ [Ns, C] product (Ns = N - p - keep).
    """
    p = protected
    plan = transform_plan(metric, importance, keep=keep, protected=p, select=select, k=k,
                          tau=tau)
    size = _sizes(x, size)
    c = x.shape[-1]
    nt = plan.targets.shape[1]
    t_x = x.gather(1, plan.targets[..., None].expand(-1, -1, c))
    t_s = size.gather(1, plan.targets[..., None])
    s_x = x.gather(1, plan.sources[..., None].expand(-1, -1, c))
    s_s = size.gather(1, plan.sources[..., None])
    spread = source_map(plan, nt, x.dtype)  # [B, Nt, Ns]
    out_s = t_s + spread @ s_s
    out_x = (t_x * t_s + spread @ (s_x * s_s)) / out_s
    return torch.cat([x[:, :p], out_x], dim=1), torch.cat([size[:, :p], out_s], dim=1)


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


def _transform_infer(i, a):  # noqa: ANN001, ANN202
    return _merged_types(i[0], a["protected"] + a["keep"])


def _transform_flops(i, o, a) -> int:  # noqa: ANN001
    b, n, c = i[0].shape
    d = i[1].shape[-1]
    nt = a["keep"]
    ns = n - a["protected"] - nt
    cand = (n - a["protected"]) // 2 if a["select"] == "bipartite" else nt
    k = min(a["k"], max(cand, 1))
    # normalise, similarities, softmax over k, spread map @ sources, size-weighting + divide
    return b * (3 * n * d + 2 * ns * cand * d + 4 * ns * k + 2 * nt * ns * (c + 1) + 3 * n * c)


register_op(OpDef(
    "token_transform", ("x", "metric", "size?", "importance?"), token_transform, OpKind.TOKEN,
    {"keep": Attr(int, doc="non-protected tokens kept (the targets)"),
     "protected": Attr(int, 1, "leading tokens kept untouched (class, distillation)"),
     "select": Attr(str, "attention", "targets by importance ('attention') or ToMe's "
                    "bipartite split ('bipartite')"),
     "k": Attr(int, 4, "targets each source token spreads over (top-k similarities)"),
     "tau": Attr(float, 0.1, "softmax temperature on the cosine similarities")},
    infer=_transform_infer, flops=_transform_flops, num_outputs=2,
    doc="Token Transforming: (x, metric [B,N,D], size, importance [B,N]) -> (x, size), "
        "p+keep tokens; x' = W(x·s)/(Ws)",
))
