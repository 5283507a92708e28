"""Structural discovery of pre-norm transformer blocks in a graph, and the machinery the
token-reduction passes (tome, prune-tokens, token-transform) share: their per-block schedule,
the class token's attention row, and inserting a token-reducing op after a block's attention
residual and re-emitting everything downstream with the new (static) token count.

A block is: attention -> (permute/reshape) -> proj linear -> (LayerScale mul) -> residual add
-> layer_norm -> linear -> activation -> linear -> (mul) -> residual add.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from accel.errors import AccelError, AccelValueError
from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.ir.ops import check_op_names

if TYPE_CHECKING:
    from accel.passes.registry import PassContext

# The frontend drops dropout, clone and contiguous and turns transposes into permutes, so
# these are the only ops between a block's parts.
_VIEW_OPS = check_op_names(("permute", "reshape"), __name__)
_SCALE_OPS = check_op_names(("mul",), __name__)
_ADD = check_op_names(("add",), __name__)
_LINEAR = check_op_names(("linear",), __name__)
_MLP_INNER_OPS = check_op_names(("gelu", "relu", "silu", "concat"), __name__)


class TokenReductionError(AccelError):
    """A token-reduction pass cannot rewrite a node for a new token count."""


@dataclass(frozen=True)
class TransformerBlock:
    """One pre-norm transformer block found in a graph."""

    index: int
    """Position among the graph's blocks (0 = first)."""
    attention: Node
    """The fused `attention` node (q, k, v [B, H, N, D])."""
    attn_residual: Node
    """The `add` node closing the attention branch (its output feeds the MLP's norm)."""
    mlp_residual: Node
    """The `add` node closing the MLP branch (the block's output)."""
    block_input: Value
    """The block's input tokens [B, N, C] (the attention residual's skip operand)."""

    @property
    def keys(self) -> Value:
        """The attention keys [B, H, N, D]."""
        return self.attention.inputs[1]

    @property
    def queries(self) -> Value:
        """The attention queries [B, H, N, D]."""
        return self.attention.inputs[0]


def _single_user(graph: Graph, v: Value, ops: Iterable[str]) -> Node | None:
    """The only user of v if it has exactly one and its op is in ops."""
    users = graph.users(v)
    return users[0] if len(users) == 1 and users[0].op in ops else None


def _follow(graph: Graph, v: Value, through: set[str]) -> Value:
    """Walk single-user chains of `through` ops starting at v; the last value reached."""
    while (n := _single_user(graph, v, through)) is not None:
        v = n.outputs[0]
    return v


def _residual_after(graph: Graph, v: Value) -> tuple[Node, Value] | None:
    """(residual add, its skip operand) reached from branch output v via an optional scale."""
    scaled = _follow(graph, v, _SCALE_OPS)
    add = _single_user(graph, scaled, _ADD)
    if add is None or len(add.inputs) != 2:
        return None
    skip = add.inputs[1] if add.inputs[0] is scaled else add.inputs[0]
    return add, skip


def find_blocks(graph: Graph) -> list[TransformerBlock]:
    """All pre-norm transformer blocks in graph, in execution order."""
    blocks: list[TransformerBlock] = []
    for attn in graph.find("attention"):
        if len(attn.inputs[1].shape) != 4:
            continue
        proj = _single_user(graph, _follow(graph, attn.outputs[0], _VIEW_OPS), _LINEAR)
        if proj is None:
            continue
        found = _residual_after(graph, proj.outputs[0])
        if found is None or found[0].outputs[0].shape[-2] != attn.inputs[1].shape[-2]:
            continue
        res1, skip = found
        mlp_res = _mlp_residual(graph, res1)
        if mlp_res is None:
            continue
        blocks.append(TransformerBlock(len(blocks), attn, res1, mlp_res, skip))
    return blocks


def _mlp_residual(graph: Graph, res1: Node) -> Node | None:
    """The add closing the MLP branch: res1 -> layer_norm -> linear -> act -> linear -> add."""
    h = res1.outputs[0]
    for user in graph.users(h):
        if user.op != "layer_norm":
            continue
        fc1 = _single_user(graph, user.outputs[0], _LINEAR)
        if fc1 is None:
            continue
        act = graph.users(fc1.outputs[0])
        if len(act) != 1:
            continue
        fc2 = _follow(graph, act[0].outputs[0], _MLP_INNER_OPS)
        fc2_node = _single_user(graph, fc2, _LINEAR)
        if fc2_node is None:
            continue
        found = _residual_after(graph, fc2_node.outputs[0])
        if found is not None and found[1] is h:
            return found[0]
    return None


def count_prefix_tokens(graph: Graph, blocks: list[TransformerBlock]) -> int:
    """Class/distillation tokens in front of the patches: the leading concat inputs (0-2)."""
    if not blocks:
        return 0
    seen = 0
    v: Value | None = blocks[0].block_input
    while v is not None and seen < 8:  # walk back through `add pos_embed`, dropout, views
        node = graph.producer(v)
        if node is None:
            return 0
        if node.op == "concat" and node.attrs.get("dim") in (1, -2):
            return sum(i.shape[1] for i in node.inputs[:-1]) if len(node.inputs) > 1 else 0
        v = next((i for i in node.inputs if i is not None and not graph.is_const(i)), None)
        seen += 1
    return 0


TokenSchedule = Literal["constant", "decreasing", "list"]


def token_schedule(r: int, schedule: TokenSchedule, rs: list[int] | None, depth: int,
                   pass_name: str) -> list[int]:
    """Requested tokens removed per block (before clamping to what the token count allows):
    r in every block, linear from 2r to 0 (same total), or one r per block from rs."""
    if schedule == "decreasing":
        return [round(2 * r * (depth - 1 - i) / max(depth - 1, 1)) for i in range(depth)]
    if schedule == "list":
        if rs is None or len(rs) != depth:
            raise AccelValueError(f"pass {pass_name}: schedule=list needs rs with one r per "
                                  f"block ({depth} blocks), got {rs}")
        return list(rs)
    return [r] * depth  # constant


def clamp_schedule(plan: list[int], tokens: int, prefix: int,
                   most: Callable[[int], int], ctx: PassContext) -> list[int]:
    """Tokens actually removed per block: each requested r clamped to ``[0, most(n)]`` for the
    ``n`` tokens entering that block (``prefix`` of them protected), with a note per clamp."""
    applied: list[int] = []
    for i, want in enumerate(plan):
        got = min(max(want, 0), most(tokens))
        if got != want:
            ctx.note(f"block {i}: r={want} clamped to {got} ({tokens} tokens, {prefix} protected)")
        applied.append(got)
        tokens -= got
    return applied


def class_attention(rw: Rewriter, block: TransformerBlock, new_of: dict[Value, Value],
                    size: Value | None = None, name: str | None = None) -> Value:
    """Mean-over-heads softmax attention row of the class token [B, N], built from the block's
    (re-emitted) q and k; with `size`, the log(size) key bias of proportional attention is
    added, as the block's attention itself had it."""
    attn = block.attention
    q = new_of.get(attn.inputs[0], attn.inputs[0])
    k = new_of.get(attn.inputs[1], attn.inputs[1])
    bias = attn.inputs[3] if len(attn.inputs) > 3 else None
    bias = new_of.get(bias, bias) if bias is not None else None
    q_cls = rw.op("slice", q, dim=2, start=0, end=1)  # [B, H, 1, D]
    logits = rw.op("matmul", q_cls, rw.op("permute", k, dims=(0, 1, 3, 2)))  # [B, H, 1, N]
    scale = attn.attrs["scale"] or 1.0 / math.sqrt(q.shape[-1])
    logits = rw.op("mul", logits, rw.const(torch.tensor(scale, dtype=q.dtype), "attn_scale"))
    if bias is not None and bias.dtype != torch.bool and bias.shape[-1] == k.shape[-2]:
        logits = rw.op("add", logits, bias)
    if size is not None:
        b, n = size.shape[0], size.shape[1]
        logits = rw.op("add", logits, rw.op("reshape", rw.op("log", size), shape=(b, 1, 1, n)))
    probs = rw.op("softmax", logits, dim=-1)
    return rw.op("mean", probs, dims=(1, 2), name=name or f"cls_attn_{block.index}")  # [B, N]


# ---- re-emission for a new token count ------------------------------------------------------
def _changed_axis(old: tuple[int, ...], new: tuple[int, ...], node: Node) -> int:
    """The single axis whose size differs between old and new shapes."""
    diff = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    if len(diff) != 1:
        raise TokenReductionError(f"node {node.name} ({node.op}): expected one resized (token) "
                                  f"axis between {old} and {new}")
    return diff[0]


def _retoken_attrs(node: Node, new_inputs: list[Value | None]) -> dict:
    """node's attributes adapted to the new token count of its inputs."""
    attrs = dict(node.attrs)
    old_in, new_in = node.inputs[0], new_inputs[0]
    if old_in is None or new_in is None or old_in.shape == new_in.shape:
        return attrs
    if node.op == "reshape":
        old_out = node.outputs[0].shape
        t = _changed_axis(old_in.shape, new_in.shape, node)
        prefix, suffix = math.prod(old_in.shape[:t]), math.prod(old_in.shape[t + 1:])
        for j, d in enumerate(old_out):
            if (d == old_in.shape[t] and math.prod(old_out[:j]) == prefix
                    and math.prod(old_out[j + 1:]) == suffix):
                attrs["shape"] = (*old_out[:j], new_in.shape[t], *old_out[j + 1:])
                return attrs
        raise TokenReductionError(f"node {node.name}: reshape {old_in.shape}->{old_out} splits "
                                  "or merges the token axis; token reduction cannot follow it")
    if node.op == "expand":
        t = _changed_axis(old_in.shape, new_in.shape, node)
        shape = list(attrs["shape"])
        shape[len(shape) - len(old_in.shape) + t] = new_in.shape[t]
        attrs["shape"] = tuple(shape)
    elif node.op == "slice":
        t = _changed_axis(old_in.shape, new_in.shape, node)
        if attrs["dim"] % len(old_in.shape) == t:
            if attrs["start"] != 0 or attrs.get("step", 1) != 1 or attrs["end"] < old_in.shape[t]:
                raise TokenReductionError(f"node {node.name}: slice of the token axis "
                                          f"{attrs['start']}:{attrs['end']} after token reduction")
            attrs["end"] = new_in.shape[t]
    return attrs


def _evaluate_input_free(graph: Graph, v: Value, depth: int = 0) -> torch.Tensor | None:
    """v's value when it depends on constants only (evaluated by reference), else None."""
    if graph.is_const(v):
        return graph.const(v)
    node = graph.producer(v)
    if node is None or depth > 32 or len(node.outputs) != 1:
        return None
    args = [None if i is None else _evaluate_input_free(graph, i, depth + 1)
            for i in node.inputs]
    if any(a is None and i is not None for a, i in zip(args, node.inputs, strict=True)):
        return None
    return node.opdef.ref(*args, **node.attrs)


def _drop_stale_mask(graph: Graph, node: Node, ins: list[Value | None]) -> list[Value | None]:
    """Attention inputs without a mask sized for the old token count, if it masks nothing."""
    if len(ins) < 4 or ins[3] is None or ins[3].shape[-1] == ins[1].shape[-2]:
        return ins
    mask = _evaluate_input_free(graph, ins[3])
    if mask is not None and (bool(mask.all()) if mask.dtype == torch.bool
                             else not bool(mask.any())):
        return ins[:3]
    raise TokenReductionError(f"attention node {node.name} has a mask over the original "
                              f"{ins[3].shape[-1]} tokens that masks some of them; token "
                              "reduction cannot remap it")


def reduce_tokens_after_blocks(
    graph: Graph,
    pass_name: str,
    blocks: list[TransformerBlock],
    reduce: Callable[[Rewriter, TransformerBlock, Value, Value | None, dict], tuple[Value, Value]
                     | None],
    prop_attn: bool,
) -> Graph:
    """Sweep the graph; after each block's attention residual call reduce(rw, block, x, size,
    new_of) -> (x', size') or None, then re-emit every downstream node for the new shapes.
    With prop_attn, attention after a reduction gets a log(size) additive key bias."""
    rw = Rewriter(graph, pass_name=pass_name)
    new_of: dict[Value, Value] = {}
    size: Value | None = None
    by_residual = {b.attn_residual.name: b for b in blocks}
    attn_names = {b.attention.name for b in blocks}
    for node in graph.nodes:
        ins = [new_of.get(v, v) if v is not None else None for v in node.inputs]
        block = by_residual.get(node.name)
        needs_bias = prop_attn and size is not None and node.name in attn_names
        if not needs_bias and block is None and all(a is b for a, b in zip(ins, node.inputs)):
            continue
        attrs = _retoken_attrs(node, ins)
        if node.op == "attention" and size is not None:
            ins = _drop_stale_mask(graph, node, ins)
        if needs_bias:
            b, n = size.shape[0], size.shape[1]
            log_size = rw.op("reshape", rw.op("log", size), shape=(b, 1, 1, n))
            bias = ins[3] if len(ins) > 3 else None
            ins = [*ins[:3], log_size if bias is None else rw.op("add", bias, log_size)]
        new_node = rw.node(node.op, *ins, name=node.name, meta=node.meta, **attrs)
        for old, new in zip(node.outputs, new_node.outputs, strict=True):
            new_of[old] = new
            rw.replace(old, new, check_type=False)
        if block is not None:
            out = reduce(rw, block, new_node.outputs[0], size, new_of)
            if out is not None:
                x_red, size = out
                new_of[node.outputs[0]] = x_red
                rw.replace(node.outputs[0], x_red, check_type=False)
    return rw.finish()
