"""Attention-guided token pruning (EViT, arXiv 2202.07800) with a PyramidDrop-style schedule.

In the chosen blocks, after the attention residual, `attentive_prune` keeps the patch tokens
the class token attends to most (its softmax(q_cls . K^T * scale + bias) row, mean over heads,
computed in the graph from the block's own q and k) and fuses the rest into one token weighted
by that attention. Training-free; the class (and distillation) tokens stay in front.

    prune-tokens{keep=0.7}                              EViT: keep 70% at depth/4, /2, 3/4
    prune-tokens{keep=0.5,layers=[1,2]}                 chosen blocks
    prune-tokens{schedule=pyramid,keeps=[0.5,0.25]}     fraction of the ORIGINAL patches kept
                                                        after each listed/stage block
"""

from __future__ import annotations

import math
from typing import Literal

from accel.errors import AccelValueError
from accel.ir.graph import Graph, Rewriter, Value
from accel.passes.common.transformer_blocks import (
    TransformerBlock,
    class_attention,
    count_prefix_tokens,
    find_blocks,
    reduce_tokens_after_blocks,
)
from accel.passes.registry import PassContext, register_pass

PruneSchedule = Literal["evit", "pyramid"]


def default_layers(depth: int, stages: int = 3) -> list[int]:
    """Pruning blocks at the stage boundaries depth*i/(stages+1) (EViT: 3, 6, 9 of 12)."""
    return sorted({max(depth * i // (stages + 1), 0) for i in range(1, stages + 1)})


def prune_plan(
    patches: int, depth: int, keep: float, layers: list[int] | None, schedule: PruneSchedule,
    keeps: list[float] | None,
) -> dict[int, int]:
    """Block index -> patch tokens kept after it."""
    if schedule == "pyramid":
        ratios = keeps or [0.5, 0.25, 0.125]
        where = layers or default_layers(depth, len(ratios))
        if len(where) != len(ratios):
            raise AccelValueError(f"pass prune-tokens: layers {where} and keeps {ratios} "
                                  "must have the same length")
        return {b: max(1, math.ceil(patches * k)) for b, k in zip(where, ratios, strict=True)}
    if not 0.0 < keep <= 1.0:
        raise AccelValueError(f"pass prune-tokens: keep={keep} must be in (0, 1]")
    plan, n = {}, patches
    for b in layers or default_layers(depth):
        n = max(1, math.ceil(n * keep))
        plan[b] = n
    return plan


@register_pass("prune-tokens", lossy=True)
def prune_tokens(
    graph: Graph,
    ctx: PassContext,
    *,
    keep: float = 0.7,
    layers: list[int] | None = None,
    schedule: PruneSchedule = "evit",
    keeps: list[float] | None = None,
    fuse: bool = True,
    protect: int = -1,
) -> Graph:
    """Keep the top tokens by class-token attention in chosen blocks (protect=-1: auto)."""
    blocks = find_blocks(graph)
    if not blocks:
        ctx.skip("no transformer blocks (attention -> proj -> residual -> MLP) found")
        return graph
    prefix = count_prefix_tokens(graph, blocks) if protect < 0 else protect
    if prefix == 0:
        ctx.skip("no class token: class-token attention pruning needs one (set protect=1 to "
                 "use token 0)")
        return graph
    tokens = blocks[0].attention.inputs[1].shape[-2]
    plan = prune_plan(tokens - prefix, len(blocks), keep, layers, schedule, keeps)
    bad = [b for b in plan if not 0 <= b < len(blocks)]
    if bad:
        raise AccelValueError(f"pass prune-tokens: layers {bad} out of range: the graph has "
                              f"{len(blocks)} transformer blocks")

    def prune(rw: Rewriter, block: TransformerBlock, x: Value, size: Value | None,
              new_of: dict[Value, Value]) -> tuple[Value, Value] | None:
        kept = plan.get(block.index)
        patches = x.shape[1] - prefix
        if kept is None or kept >= patches:
            return None
        node = rw.node("attentive_prune", x, class_attention(rw, block, new_of), size,
                       keep=kept, protected=prefix, fuse=fuse, name=f"prune_{block.index}")
        return node.outputs[0], node.outputs[1]

    out = reduce_tokens_after_blocks(graph, "prune-tokens", blocks, prune, prop_attn=False)
    if out is graph or not out.find("attentive_prune"):
        ctx.skip("nothing to prune with this schedule")
        return graph
    ctx.note(f"protected {prefix}; patch tokens kept after block: {plan}"
             f"{' (+1 fused token each)' if fuse else ''}")
    return out
