"""Which dim of each IR value is the batch dim, for batch-agnostic ONNX export.

Graph inputs whose dim 0 equals the example batch size carry the batch at dim 0; each node
maps its inputs' batch dims to its outputs' by a small rule (shape ops move or drop it,
reductions may remove it, everything else keeps it in place). Lowerings read the result
through :meth:`OnnxBuilder.batch_axis` to avoid baking the example batch into shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from accel.ir.graph import Graph, Node, Value

_DIMS_REDUCTIONS = {"sum", "mean", "amax", "amin", "var"}


def example_batch(graph: Graph) -> int | None:
    """The batch size of the graph's example inputs (dim 0 of the first input)."""
    return graph.inputs[0].shape[0] if graph.inputs and graph.inputs[0].shape else None


def broadcast_constants(graph: Graph) -> list[Value]:
    """Constants that are a batch-free tensor repeated along dim 0 to the example batch.

    Constant folding turns ``cls_token.expand(B, -1, -1)`` or ``zeros(B, L)`` into such
    tensors; the exporter stores one row and expands it to the run-time batch.
    """
    batch = example_batch(graph)
    if batch is None or batch < 2:
        return []
    found = []
    for v, t in graph.constants.items():
        if t.dim() >= 2 and t.shape[0] == batch and torch.equal(t, t[:1].expand_as(t)):
            found.append(v)
    return found


def infer_batch_axes(graph: Graph,
                     batch_constants: Sequence[Value] = ()) -> dict[Value, int | None]:
    """The batch dim of every input and node output (``None`` where there is none).

    ``batch_constants`` are constants treated as carrying the batch at dim 0.
    """
    axes: dict[Value, int | None] = {v: 0 for v in batch_constants}
    batch = example_batch(graph)
    for v in graph.inputs:
        axes[v] = 0 if batch is not None and v.shape and v.shape[0] == batch else None
    for n in graph.nodes:
        in_axes = [axes.get(v) if v is not None else None for v in n.inputs]
        for o, ax in zip(n.outputs, node_batch_axes(n, in_axes, batch), strict=True):
            axes[o] = ax
    return axes


def node_batch_axes(node: Node, in_axes: Sequence[int | None],
                    batch: int | None) -> list[int | None]:
    """The batch dim of each output of ``node``, given its inputs' batch dims."""
    src = next(((v, a) for v, a in zip(node.inputs, in_axes, strict=True) if a is not None), None)
    out = node.outputs[0]
    if node.op == "expand":
        return [_expand_axis(node, src, batch)]
    if src is None:
        return [None] * len(node.outputs)
    x, p = src
    a = node.attrs
    if node.op == "permute":
        return [list(d % x.type.rank for d in a["dims"]).index(p)]
    if node.op == "reshape":
        return [_reshape_axis(x.shape, p, out.shape)]
    if node.op == "select":
        d = a["dim"] % x.type.rank
        return [None if d == p else (p - 1 if d < p else p)]
    if node.op == "embedding":
        return [p if p < out.type.rank else None]
    if node.op in _DIMS_REDUCTIONS or node.op == "argmax":
        dims = a["dims"] if node.op != "argmax" else (a["dim"],)
        dims = [d % x.type.rank for d in dims] or list(range(x.type.rank))
        if p in dims:
            return [None]
        return [p if a["keepdim"] else p - sum(d < p for d in dims)]
    return [_aligned_axis(x, p, o) for o in node.outputs]


def _aligned_axis(x: Value, p: int, out: Value) -> int | None:
    size = x.shape[p]
    if out.type.rank == x.type.rank and out.shape[p] == size:
        return p
    q = p + out.type.rank - x.type.rank
    if 0 <= q < out.type.rank and out.shape[q] == size:
        return q
    if p < out.type.rank and out.shape[p] == size:
        return p
    return None


def _reshape_axis(in_shape: Sequence[int], p: int, out_shape: Sequence[int]) -> int | None:
    """The output dim starting at the batch dim's element offset (its outermost factor)."""
    prefix = math.prod(in_shape[:p])
    for q in range(len(out_shape)):
        if math.prod(out_shape[:q]) == prefix and (out_shape[q] != 1 or in_shape[p] == 1):
            return q
    return None


def _expand_axis(node: Node, src: tuple[Value, int] | None, batch: int | None) -> int | None:
    out = node.outputs[0]
    x = node.inputs[0]
    if src is not None:
        return _aligned_axis(src[0], src[1], out)
    # A batch-free tensor broadcast to the batch size at dim 0 (cls tokens, masks).
    offset = out.type.rank - x.type.rank
    if batch is not None and batch > 1 and out.shape and out.shape[0] == batch:
        if offset > 0 or x.shape[0] == 1:
            return 0
    return None
