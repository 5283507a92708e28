"""Token Transforming (arXiv 2506.05709) for vision transformers, training-free.

Token reduction as one token-matrix transform: after the attention residual of every
transformer block, `token_transform` keeps N' tokens and computes them as X' = W (X·s) / (W s)
with sizes s' = W s, where W [N', N] is built from the tokens themselves: the kept (target)
tokens carry themselves, and every other (source) token spreads over its k most similar
targets with weights softmax(cosine similarity / tau). Pruning (EViT: drop the sources) and
merging (ToMe: each source into exactly one target) are special cases of W; here each target
receives many sources and each source feeds several targets (many-to-many), so nothing is
discarded and the sizes still add up to the original patch count. Sizes flow to later blocks,
where attention gets a log(size) key bias (proportional attention); class/distillation tokens
are protected and stay in front.

    token-transform{r=8}                            r tokens fewer after every block
    token-transform{r=8,schedule=decreasing}        2r in the first block down to 0 in the last
    token-transform{schedule=list,rs=[16,12,8,0]}   per-block list
    token-transform{r=8,select=bipartite,k=1}       ToMe exactly (one-hot W)
    token-transform{r=8,k=4,tau=0.05,metric=tokens}

Options:

- ``r`` (int, 8), ``schedule`` (constant|decreasing|list), ``rs`` (list[int]): tokens removed
  per block, as for ``tome``; clamped (with a note) so that at least one target is left
  (select=attention) or to the A set (select=bipartite).
- ``select`` (attention|bipartite, attention): which tokens are kept. ``attention``: the
  tokens the class token attends to most (EViT's informative tokens; its softmax row, mean over
  heads, from the block's own q and k, with the proportional-attention bias); the others are
  sources and every kept token is a candidate. Needs a class token. ``bipartite``: ToMe's
  split (A = even, B = odd patch tokens; sources are the r A tokens with the best cosine match
  in B; candidates are the B tokens); with k=1 this is `tome` exactly.
- ``k`` (int, 4): candidates each source spreads over (its top-k similarities; clamped to the
  number of candidates). ``tau`` (float, 0.1): softmax temperature on the cosine similarities
  (small: nearly one-hot onto the best match; large: an even spread over the k).
- ``metric`` (keys|tokens, keys): similarity on the attention keys (mean over heads) or on the
  block's tokens after the attention residual, as for ``tome``.
- ``prop_attn`` (bool, true): log(size) key bias in later blocks' attention.
- ``protect`` (int, -1): leading tokens never transformed; -1 counts the class/distillation
  tokens in front of the patches.

The method's paper gives the construction (a target set chosen by informativeness, W from
similarities with a softmax and top-k sparsification); the defaults here (attention targets,
k=4, tau=0.1) are this implementation's training-free choice. On the 4-block digits ViT of
benchmarks/tome.py the class token's attention says little about which patches matter, and
attention targets lose 1.5-3 points where `select=bipartite,metric=tokens` (k=2-4) stays
within noise of `tome` at the same FLOPs — see that benchmark for the settings chosen on
validation against `tome` at matched FLOPs.
"""

from __future__ import annotations

from typing import Literal

from accel.errors import AccelValueError
from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.common.transformer_blocks import (
    TokenSchedule,
    TransformerBlock,
    clamp_schedule,
    class_attention,
    count_prefix_tokens,
    find_blocks,
    reduce_tokens_after_blocks,
    token_schedule,
)
from accel.passes.registry import PassContext, register_pass

TransformSelect = Literal["attention", "bipartite"]
TransformMetric = Literal["keys", "tokens"]


def most_removable(tokens: int, prefix: int, select: TransformSelect) -> int:
    """Most tokens one block can remove: all but one target (attention) or the whole A set
    (bipartite, as tome: (N - p) // 2)."""
    rest = tokens - prefix
    return max(rest - 1, 0) if select == "attention" else max(rest // 2, 0)


@register_pass("token-transform", lossy=True)
def token_transform(
    graph: Graph,
    ctx: PassContext,
    *,
    r: int = 8,
    schedule: TokenSchedule = "constant",
    rs: list[int] | None = None,
    select: TransformSelect = "attention",
    k: int = 4,
    tau: float = 0.1,
    metric: TransformMetric = "keys",
    prop_attn: bool = True,
    protect: int = -1,
) -> Graph:
    """Many-to-many token transform after each block's attention (protect=-1: auto)."""
    if k < 1:
        raise AccelValueError(f"pass token-transform: k={k} must be >= 1 (targets each source "
                              "token spreads over)")
    if not tau > 0:
        raise AccelValueError(f"pass token-transform: tau={tau} must be > 0 (softmax "
                              "temperature on the cosine similarities)")
    blocks = find_blocks(graph)
    if not blocks:
        ctx.skip("no transformer blocks (attention -> proj -> residual -> MLP) found")
        return graph
    plan = token_schedule(r, schedule, rs, len(blocks), "token-transform")
    prefix = count_prefix_tokens(graph, blocks) if protect < 0 else protect
    if select == "attention" and prefix == 0:
        ctx.skip("no class token: select=attention ranks tokens by class-token attention "
                 "(use select=bipartite, or protect=1 to use token 0)")
        return graph
    tokens = blocks[0].attention.inputs[1].shape[-2]
    applied = clamp_schedule(plan, tokens, prefix,
                             lambda n: most_removable(n, prefix, select), ctx)
    if not any(applied):
        ctx.skip("r is 0 in every block")
        return graph

    def transform(rw: Rewriter, block: TransformerBlock, x: Value, size: Value | None,
                  new_of: dict[Value, Value]) -> tuple[Value, Value] | None:
        r_i = applied[block.index]
        if r_i == 0:
            return None
        i = block.index
        if metric == "tokens":
            similar_by = x  # [B, N, C]
        else:
            keys = new_of.get(block.keys, block.keys)  # [B, H, N, D]
            similar_by = rw.op("mean", keys, dims=(1,), name=f"tt_metric_{i}")
        importance = None
        if select == "attention":
            importance = class_attention(rw, block, new_of, size if prop_attn else None,
                                         name=f"tt_cls_attn_{i}")
        keep = x.shape[1] - prefix - r_i
        node = rw.node("token_transform", x, similar_by, size, importance, keep=keep,
                       protected=prefix, select=select, k=k, tau=tau,
                       name=f"token_transform_{i}")
        return node.outputs[0], node.outputs[1]

    out = reduce_tokens_after_blocks(graph, "token-transform", blocks, transform, prop_attn)
    ctx.note(f"{len(blocks)} blocks, protected {prefix}, r per block {applied}, select "
             f"{select}, k {k}, tau {tau:g}, metric {metric}, tokens "
             f"{blocks[0].attention.inputs[1].shape[-2]} -> {tokens}")
    return out
