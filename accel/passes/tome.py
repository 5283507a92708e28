"""Token merging (ToMe, arXiv 2210.09461) for vision transformers, training-free.

After the attention residual of every transformer block, `bipartite_merge` merges r token
pairs chosen by cosine similarity of the attention keys (mean over heads); merged tokens are
size-weighted averages and their sizes flow to later blocks, where attention gets a log(size)
key bias (proportional attention). Class/distillation tokens are protected and stay in front.

    tome{r=8}                         same r in every block
    tome{r=8,schedule=decreasing}     2r in the first block down to 0 in the last
    tome{schedule=list,rs=[8,8,4,0]}  per-block list
    tome{r=8,metric=tokens}           match on the tokens themselves instead of the keys

The similarity metric defaults to the attention keys (the paper's choice on ImageNet ViTs);
`metric=tokens` matches on the block's tokens after the attention residual — the values being
merged — which on the small digits ViT in benchmarks/tome.py loses far less accuracy (see the
README's token-reduction results).
"""

from __future__ import annotations

from typing import Literal

from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.common.transformer_blocks import (
    TokenSchedule,
    TransformerBlock,
    clamp_schedule,
    count_prefix_tokens,
    find_blocks,
    reduce_tokens_after_blocks,
    token_schedule,
)
from accel.passes.registry import PassContext, register_pass

TomeSchedule = TokenSchedule
TomeMetric = Literal["keys", "tokens"]


@register_pass("tome", lossy=True)
def tome(
    graph: Graph,
    ctx: PassContext,
    *,
    r: int = 8,
    schedule: TomeSchedule = "constant",
    rs: list[int] | None = None,
    prop_attn: bool = True,
    protect: int = -1,
    metric: TomeMetric = "keys",
) -> Graph:
    """Merge r tokens per transformer block by bipartite soft matching (protect=-1: auto)."""
    blocks = find_blocks(graph)
    if not blocks:
        ctx.skip("no transformer blocks (attention -> proj -> residual -> MLP) found")
        return graph
    plan = token_schedule(r, schedule, rs, len(blocks), "tome")
    prefix = count_prefix_tokens(graph, blocks) if protect < 0 else protect
    tokens = blocks[0].attention.inputs[1].shape[-2]
    applied = clamp_schedule(plan, tokens, prefix, lambda n: max((n - prefix) // 2, 0), ctx)
    if not any(applied):
        ctx.skip("r is 0 in every block")
        return graph

    def merge(rw: Rewriter, block: TransformerBlock, x: Value, size: Value | None,
              new_of: dict[Value, Value]) -> tuple[Value, Value] | None:
        r_i = applied[block.index]
        if r_i == 0:
            return None
        if metric == "tokens":
            similar_by = x  # [B, N, C]
        else:
            keys = new_of.get(block.keys, block.keys)  # [B, H, N, D]
            similar_by = rw.op("mean", keys, dims=(1,), name=f"tome_metric_{block.index}")
        node = rw.node("bipartite_merge", x, similar_by, size, r=r_i, protected=prefix,
                       name=f"tome_merge_{block.index}")
        return node.outputs[0], node.outputs[1]

    out = reduce_tokens_after_blocks(graph, "tome", blocks, merge, prop_attn)
    ctx.note(f"{len(blocks)} blocks, protected {prefix}, r per block {applied}, metric {metric}, "
             f"tokens {blocks[0].attention.inputs[1].shape[-2]} -> {tokens}")
    return out
