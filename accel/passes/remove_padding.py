"""Padding removal for variable-length text encoders (ByteTransformer, arXiv 2210.03052):
``remove-padding``.

A batch of sentences padded to its longest spends the padding fraction of every linear,
LayerNorm, activation and residual on tokens nobody reads. This pass finds the padding mask
structurally and runs the token-wise ops on the real tokens only:

1. **The mask.** A rank-2 graph input ``[B, S]`` that every ``attention`` node's mask
   operand is computed from (and from constants only), with no causal attention. It is
   *proven* a key-padding mask by evaluating the mask computation on probe masks: the
   operand must keep (bool) or add 0 to (float) exactly the keys whose mask entry is
   nonzero, and mask (``False``, or ≤ -1e4) the others, for every query row. Causal
   masks, 3-D masks, masks the attention does not see: the graph is left unchanged, with
   a note saying why. (The proof lives in :mod:`accel.passes.common.padding`: calibration
   uses it too, to observe real tokens only.)
2. **The token-wise region.** Nodes whose output is ``[B, S, C]`` and whose op works on
   each token on its own — linears (float and quantized), LayerNorm over the last dim,
   pointwise ops whose other operands carry no token dims — run on ``[T, C]``: the real
   tokens packed (``token_offsets`` / ``pack_tokens``; T is a counted size symbol, the
   number of nonzero mask entries of each call). Regions without a linear stay as they
   are (nothing to gain over the copies).
3. **Everything else** (attention, head reshapes, poolers, outputs) sees ``unpack_tokens``:
   the padded layout with zeros at padded positions. That is only sound if nothing
   downstream mixes padded positions into real ones, which the pass checks before it
   rewrites anything: unpacked values may flow into attention (as q/k/v, through head
   reshapes and permutes, the mask being the proven one), into shape ops, pointwise ops,
   linears and last-dim norms, and out of the graph. A reduction over tokens, a matmul,
   a fallback... leaves the graph unchanged with a note naming the node.

What callers see: outputs equal ``default``'s at real-token positions to float rounding;
at padded positions they are zeros (where ``default`` returns the values eager computes
for padding tokens), and anything computed from a padded position (a pooler reading
position 0 of a left-padded row) is computed from those zeros. Rows that are all padding
have no real token: their outputs are zeros. Attention runs on the padded layout, per
sequence, so its cost is unchanged; the linears — most of an encoder's FLOPs up to a few
hundred tokens — shrink with the padding fraction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy
import torch

from accel.ir.graph import Graph, Node, Value
from accel.ir.ops.registry import OpKind
from accel.passes.common.padding import NoPaddingMask, find_padding_mask
from accel.passes.common.padding import hint as _hint
from accel.passes.registry import PassContext, register_pass

TOKENWISE_MATMULS = frozenset({"linear", "linear_int8_dynamic", "linear_int8_static",
                               "linear_weight_only"})
"""Linears: each output token is a function of the same input token."""
COUNT_SYMBOL = "tokens"
"""Name of the counted size symbol: real tokens in a call's batch."""
HEAD_PATH_OPS = frozenset({"reshape", "permute", "cast"})
"""Ops that may sit between an unpacked value and attention: they keep token positions."""


_Refused = NoPaddingMask
"""The graph is left unchanged; the message says why (a note in the report)."""


@register_pass("remove-padding")
def remove_padding(graph: Graph, ctx: PassContext, *, min_linears: int = 1) -> Graph:
    """Run token-wise ops on real tokens only (see the module docstring).

    ``min_linears``: a packed region needs at least this many linears to be worth its
    pack/unpack copies.
    """
    try:
        mask = find_padding_mask(graph)
        packed = tokenwise_region(graph, mask, min_linears)
        check_padding_insensitive(graph, mask, packed)
    except _Refused as e:
        ctx.skip(str(e))
        return graph
    new = _rewrite(graph, ctx, mask, packed)
    linears = sum(n.op in TOKENWISE_MATMULS for n in packed)
    ctx.note(f"padding mask {mask.name}: {len(packed)} node(s) ({linears} linears) run on the "
             f"real tokens only ([{COUNT_SYMBOL}, C]); padded positions of outputs are zeros")
    return new


# ---- 1. the mask ------------------------------------------------------------------------
# ---- 2. the token-wise region --------------------------------------------------------------
def _token_major(v: Value | None, mask: Value) -> bool:
    """``v`` is a float ``[B, S, C]`` value over the mask's batch and sequence."""
    return (v is not None and v.type.rank == 3 and v.dtype.is_floating_point
            and _same(v.shape[0], mask.shape[0]) and _same(v.shape[1], mask.shape[1]))


def _same(a: object, b: object) -> bool:
    if isinstance(a, sympy.Basic) or isinstance(b, sympy.Basic):
        return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0
    return a == b


def _tokenwise(graph: Graph, node: Node, mask: Value) -> bool:
    """Whether ``node`` computes each token of its [B, S, C] output from that token alone."""
    if len(node.outputs) != 1 or not _token_major(node.output, mask):
        return False
    tokens = [i for i in node.inputs if _token_major(i, mask)]
    others = [i for i in node.inputs if i is not None and not _token_major(i, mask)]
    if not tokens:
        return False
    if node.op in TOKENWISE_MATMULS:
        return node.inputs[0] in tokens and all(graph.is_const(o) for o in others)
    if node.op in ("layer_norm", "rms_norm"):
        return (node.inputs[0] in tokens and len(node.attrs.get("normalized_shape", (0,))) == 1
                and not tokens[1:])
    if node.opdef.kind is OpKind.POINTWISE:
        return all(o.type.rank <= 1 for o in others)  # scalars and [C] vectors broadcast
    return False


def tokenwise_region(graph: Graph, mask: Value, min_linears: int) -> list[Node]:
    """The nodes to run packed: token-wise nodes in connected groups holding a linear."""
    nodes = [n for n in graph.nodes if _tokenwise(graph, n, mask)]
    chosen = set(nodes)
    group: dict[Node, int] = {}
    parent = list(range(len(nodes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = {n: i for i, n in enumerate(nodes)}
    for n in nodes:
        for i in n.inputs:
            p = graph.producer(i) if i is not None else None
            if p in chosen:
                parent[find(index[n])] = find(index[p])
    for n in nodes:
        group[n] = find(index[n])
    linears: dict[int, int] = {}
    for n in nodes:
        linears[group[n]] = linears.get(group[n], 0) + (n.op in TOKENWISE_MATMULS)
    region = [n for n in nodes if linears[group[n]] >= max(min_linears, 1)]
    if not region:
        raise _Refused("no token-wise region with a linear over the padded tokens")
    return region


# ---- 3. soundness -----------------------------------------------------------------------------
def check_padding_insensitive(graph: Graph, mask: Value, packed: list[Node]) -> None:
    """Refuse unless every consumer of an unpacked value keeps padded positions apart."""
    in_region = set(packed)
    aligned: set[Value] = set()  # may differ at padded positions, positions as in the input
    shifted: set[Value] = set()  # may differ at positions derived from padded ones
    for n in packed:
        if any(u not in in_region for u in graph.users(n.output)) or \
                n.output in graph.outputs:
            aligned.add(n.output)
    for node in graph.nodes:
        if node in in_region:
            continue
        ins = [i for i in node.inputs if i is not None]
        touched = [i for i in ins if i in aligned or i in shifted]
        if not touched:
            continue
        if node.op == "attention":
            seq = mask.shape[1]
            if any(i not in aligned for i in touched) or node.inputs[3] in touched or \
                    not all(_same(i.shape[-2], seq) for i in touched):
                raise _Refused(f"attention {node.name} reads an unpacked value whose token "
                               "positions moved (slice/concat/pad before attention)")
            aligned.update(node.outputs)
            continue
        if node.op in HEAD_PATH_OPS and all(i in aligned for i in touched):
            aligned.update(node.outputs)
            continue
        if _position_local(node) and _keeps_channels(node):
            shifted.update(node.outputs)
            continue
        raise _Refused(f"node {node.name} (op '{node.op}') reads an unpacked value and may mix "
                       "padded positions into real ones; left unchanged")


def _keeps_channels(node: Node) -> bool:
    """Shape ops that keep the last axis the channels (no reshape folding positions into
    it, no permute moving it): a later linear still mixes channels of one position only."""
    if node.op == "permute":
        return node.attrs["dims"][-1] in (-1, len(node.attrs["dims"]) - 1)
    if node.op in ("reshape", "expand"):
        return _same(node.output.shape[-1], node.inputs[0].shape[-1]) if \
            node.output.type.rank and node.inputs[0].type.rank else False
    return True


def _position_local(node: Node) -> bool:
    """Ops whose output at a position reads the input at one position only."""
    kind = node.opdef.kind
    if kind in (OpKind.SHAPE, OpKind.POINTWISE) or node.op in TOKENWISE_MATMULS:
        return True
    return node.op in ("layer_norm", "rms_norm") and len(
        node.attrs.get("normalized_shape", (0,))) == 1


# ---- the rewrite ------------------------------------------------------------------------------
def _rewrite(graph: Graph, ctx: PassContext, mask: Value, packed: list[Node]) -> Graph:
    rw = graph.rewriter()
    rw.pass_name = "remove-padding"
    b, s = mask.shape
    hi = _upper(graph, b) * _upper(graph, s) if None not in (_upper(graph, b),
                                                            _upper(graph, s)) else None
    example = _example_mask(graph, ctx, mask)
    hint = int(torch.count_nonzero(example)) if example is not None else _hint(graph, b) * \
        _hint(graph, s)
    rw.add_counted_symbol(COUNT_SYMBOL, mask, hint=hint, hi=hi)
    if example is not None:
        ctx.metric("example_padding", 1 - hint / example.numel())
    offsets = rw.op("token_offsets", mask, count=COUNT_SYMBOL, name="token_offsets")
    packed_of: dict[Value, Value] = {}
    in_region = set(packed)

    def pack(v: Value) -> Value:
        hit = packed_of.get(v)
        if hit is None:
            hit = packed_of[v] = rw.op("pack_tokens", v, offsets, name=f"{v.name}_packed")
        return hit

    for n in packed:
        ins = [pack(i) if _token_major(i, mask) else i for i in n.inputs]
        packed_of[n.output] = rw.node(n.op, *ins, name=f"{n.name}_packed", meta={**n.meta},
                                      **n.attrs).output
    for n in packed:
        users = [u for u in graph.users(n.output) if u not in in_region]
        if users or n.output in graph.outputs:
            rw.replace(n.output, rw.op("unpack_tokens", packed_of[n.output], offsets, mask,
                                       name=f"{n.name}_unpacked"))
    return rw.finish()


def _upper(graph: Graph, d: object) -> int | None:
    """A dim's largest size (``None``: unbounded)."""
    if isinstance(d, int):
        return d
    if isinstance(d, sympy.Symbol) and d.name in graph.symbols:
        return graph.symbols[d.name].hi
    return None


def _example_mask(graph: Graph, ctx: PassContext, mask: Value) -> torch.Tensor | None:
    """The example call's mask (for the token count the cost model assumes)."""
    inputs: Mapping[Value, torch.Tensor] = dict(zip(graph.inputs, ctx.example_inputs))
    t = inputs.get(mask)
    return t if isinstance(t, torch.Tensor) and math.prod(t.shape) else None
