"""The padding mask of a text encoder, found and proven structurally.

A rank-2 graph input ``[B, S]`` that every ``attention`` node's mask operand is computed from
(and from constants only), with no causal attention, is *proven* a key-padding mask by
evaluating the mask computation on probe masks: the operand must keep (bool) or add 0 to
(float) exactly the keys whose mask entry is nonzero, and mask (``False``, or ≤ -1e4) the
others, for every query row. Used by ``remove-padding`` (to run token-wise ops on real
tokens) and by calibration (Hessians and samples of real tokens only, see
:func:`accel.calibration.calibrate`'s ``token_mask``).
"""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Node, Value
from accel.ir.shapes import evaluate, is_symbolic, symbol

MASKED_BELOW = -1e4
"""An additive mask entry at or below this removes its key (exp underflows to 0 in fp32)."""


class NoPaddingMask(Exception):
    """The graph has no provable padding mask; the message says why."""


def padding_mask_or_none(graph: Graph) -> Value | None:
    """:func:`find_padding_mask`, or ``None`` when the graph has none."""
    try:
        return find_padding_mask(graph)
    except NoPaddingMask:
        return None


def find_padding_mask(graph: Graph) -> Value:
    """The rank-2 input every attention mask is computed from, proven a key-padding mask.

    Raises :class:`NoPaddingMask` (its message says why) when there is none."""
    attns = graph.find("attention")
    if not attns:
        raise NoPaddingMask("no attention node: nothing is masked by padding")
    if any(n.attrs["causal"] for n in attns):
        raise NoPaddingMask("causal attention: a causal mask is not a padding mask")
    masks = [n.inputs[3] if len(n.inputs) > 3 else None for n in attns]
    if any(m is None for m in masks):
        first = attns[masks.index(None)]
        raise NoPaddingMask(f"attention {first.name} has no mask: no padding-mask input to "
                       "remove padding by")
    sources = {_input_deps(graph, m) for m in masks}  # type: ignore[arg-type]
    if sources == {frozenset()}:
        raise NoPaddingMask("the attention masks are constants: no padding-mask input (call the "
                       "model with its attention mask as an input)")
    if len(sources) != 1 or len(next(iter(sources))) != 1:
        raise NoPaddingMask("the attention masks are not computed from exactly one input "
                       f"(inputs: {sorted(v.name for s in sources for v in s)})")
    (mask,) = next(iter(sources))
    if mask.type.rank != 2:
        raise NoPaddingMask(f"mask input {mask.name} is {mask.type}, not a [batch, seq] padding "
                       "mask")
    b, s = (hint(graph, d) for d in mask.shape)
    for probe in _probes(b, s, mask.dtype):
        for node, m in zip(attns, masks, strict=True):
            got = _evaluate(graph, m, {mask: probe})  # type: ignore[arg-type]
            if not _is_key_padding(got, probe, node):
                raise NoPaddingMask(f"attention {node.name}: its mask is not a key-padding mask of "
                               f"{mask.name} (it depends on the query position, or masks "
                               "differently); left unchanged")
    return mask


def _input_deps(graph: Graph, v: Value) -> frozenset[Value]:
    """The graph inputs ``v`` is computed from."""
    inputs, seen, todo = set(graph.inputs), set(), [v]
    found: set[Value] = set()
    while todo:
        x = todo.pop()
        if x in seen:
            continue
        seen.add(x)
        if x in inputs:
            found.add(x)
        node = graph.producer(x)
        if node is not None:
            todo.extend(i for i in node.inputs if i is not None)
    return frozenset(found)


def hint(graph: Graph, d: object) -> int:
    """A dim's example size."""
    if isinstance(d, int):
        return d
    return int(evaluate(d, {symbol(n): s.hint for n, s in graph.symbols.items()}))


def _probes(b: int, s: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Probe masks: all real; right-padded rows of varied lengths; scattered padding."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, s + 1, (b,), generator=g)
    lengths[0] = max(1, s // 2)
    right = (torch.arange(s)[None] < lengths[:, None])
    scattered = torch.rand(b, s, generator=g) < 0.6
    scattered[:, 0] = True
    return [t.to(dtype) for t in (torch.ones(b, s, dtype=torch.bool), right, scattered)]


def _evaluate(graph: Graph, v: Value, env: dict[Value, torch.Tensor]) -> torch.Tensor:
    """``v``'s value with ``env`` giving some inputs (the rest of its producers by reference)."""
    sizes = {symbol(n): s.hint for n, s in graph.symbols.items()}
    memo: dict[Value, torch.Tensor] = dict(env)

    def value(x: Value) -> torch.Tensor:
        if x in memo:
            return memo[x]
        if graph.is_const(x):
            return graph.const(x)
        node = graph.producer(x)
        assert node is not None, x
        args = [None if i is None else value(i) for i in node.inputs]
        attrs = ({k: evaluate(a, sizes) for k, a in node.attrs.items()}
                 if is_symbolic(tuple(node.attrs.values())) else node.attrs)
        with torch.no_grad():
            out = node.opdef.ref(*args, **attrs)
        for o, t in zip(node.outputs, out if len(node.outputs) > 1 else (out,), strict=True):
            memo[o] = t
        return memo[x]

    return value(v)


def _is_key_padding(m: torch.Tensor, probe: torch.Tensor, node: Node) -> bool:
    """Whether attention mask operand ``m`` keeps exactly the keys ``probe`` marks real."""
    if m.dim() != 4 or m.shape[-1] != probe.shape[1]:
        return False
    real = (probe != 0)[:, None, None, :]
    shape = torch.broadcast_shapes(m.shape, real.shape)
    if shape[0] != probe.shape[0]:
        return False
    m, real = m.expand(shape), real.expand(shape)
    if m.dtype == torch.bool:
        return bool((m == real).all())
    return bool((m[real] == 0).all()) and bool((m[~real] <= MASKED_BELOW).all())
