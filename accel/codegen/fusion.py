"""Operator fusion: partition a graph into kernel groups using the IR's op kinds.

A pure function of the graph. Each :class:`KernelGroup` is a set of nodes one Triton kernel
runs (pointwise chains with broadcasting; reductions over the last dim with their pointwise
prologue/epilogue; linear/matmul with a pointwise epilogue; attention; int8 linears, one
node each, on the int8 kernel of :mod:`accel.codegen.triton_int8`; token merging/pruning, one
node each, on the gather/segmented-reduce kernels of :mod:`accel.codegen.triton_tokens`);
every other node becomes an ``ATEN`` group of one node, run by the reference implementation.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

import torch

from accel.ir.graph import Graph, Node, Value
from accel.ir.ops.registry import OpKind


class GroupKind(enum.Enum):
    """Which Triton template runs a group (``ATEN``: the reference implementation)."""

    POINTWISE = "pointwise"
    REDUCTION = "reduction"
    MATMUL = "matmul"
    ATTENTION = "attention"
    INT8_LINEAR = "int8_linear"
    TOKEN = "token"
    ATEN = "aten"


@dataclass(frozen=True)
class KernelGroup:
    """Nodes run by one kernel, with the values it reads and the values it writes."""

    name: str
    """Kernel name (from the group's anchor node)."""
    kind: GroupKind
    """Template that runs it."""
    nodes: tuple[Node, ...]
    """Nodes in topological order; the anchor (matmul/reduction/attention) is first
    after any prologue."""
    inputs: tuple[Value, ...]
    """Values read from outside the group (graph inputs, constants, other groups)."""
    outputs: tuple[Value, ...]
    """Values used outside the group or returned by the graph."""

    def describe(self) -> str:
        """One report line: kind, name and the ops it fuses."""
        return f"{self.kind.value} {self.name}: {' + '.join(n.op for n in self.nodes)}"


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Pointwise ops the templates can emit (see accel.codegen.triton.expr).
FUSIBLE_POINTWISE = frozenset({
    "add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "rsqrt", "abs", "reciprocal",
    "sin", "cos", "tanh", "erf", "sigmoid", "relu", "silu", "gelu", "maximum", "minimum",
    "clamp", "leaky_relu", "cast", "hardswish", "hardsigmoid",
})
ROW_REDUCTIONS = frozenset({"softmax", "layer_norm", "rms_norm", "sum", "mean"})
INT8_LINEAR_OPS = frozenset({"linear_int8_dynamic", "linear_int8_static"})
"""Quantized linears run by the int8 matmul with fused dequantization."""
TOKEN_OPS = frozenset({"bipartite_merge", "attentive_prune"})
"""Token-reduction ops run by the token gather/segmented-reduce kernels."""


def partition(graph: Graph, aten: Collection[Node] = ()) -> list[KernelGroup]:
    """Split ``graph`` into kernel groups in execution order; unfusable nodes go to aten.

    Nodes in ``aten`` are kept as single-node aten groups (the target runs them its own way).
    """
    claimed: dict[Node, int] = {}
    plans: list[tuple[GroupKind, list[Node]]] = []
    order = {n: i for i, n in enumerate(graph.nodes)}

    def claim(kind: GroupKind, nodes: list[Node]) -> None:
        for n in nodes:
            claimed[n] = len(plans)
        plans.append((kind, sorted(nodes, key=order.__getitem__)))

    # anchors first so their prologue/epilogue are not taken by pointwise chains
    for node in aten:
        claim(GroupKind.ATEN, [node])
    for node in graph.nodes:
        if node in claimed:
            continue
        if node.op in INT8_LINEAR_OPS and _int8_linear_ok(node):
            claim(GroupKind.INT8_LINEAR, [node])
        elif node.op in TOKEN_OPS and _token_ok(node):
            claim(GroupKind.TOKEN, [node])
        elif node.op == "attention" and _attention_ok(graph, node):
            claim(GroupKind.ATTENTION, [node])
        elif node.op in ("linear", "matmul") and _matmul_ok(graph, node):
            claim(GroupKind.MATMUL, [node, *_epilogue(graph, node, claimed, order)])
        elif node.op in ROW_REDUCTIONS and _reduction_ok(graph, node):
            pro = _prologue(graph, node, claimed)
            epi = (_epilogue(graph, node, claimed, order)
                   if node.op in ("softmax", "layer_norm", "rms_norm") else [])
            claim(GroupKind.REDUCTION, [*pro, node, *epi])
    for node in graph.nodes:
        if node in claimed:
            continue
        if _pointwise_ok(node):
            claim(GroupKind.POINTWISE, [node, *_epilogue(graph, node, claimed, order)])
        else:
            claim(GroupKind.ATEN, [node])
    # emit groups in an order where every group's inputs are ready: by last node position
    groups = [_make_group(graph, kind, nodes) for kind, nodes in plans]
    groups.sort(key=lambda g: max(order[n] for n in g.nodes))
    return groups


def _make_group(graph: Graph, kind: GroupKind, nodes: list[Node]) -> KernelGroup:
    inside = {o for n in nodes for o in n.outputs}
    members = set(nodes)
    inputs: list[Value] = []
    for n in nodes:
        for v in n.inputs:
            if v is not None and v not in inside and v not in inputs:
                inputs.append(v)
    graph_outs = set(graph.outputs)
    outputs = [o for n in nodes for o in n.outputs
               if o in graph_outs or any(u not in members for u in graph.users(o))]
    anchor = next((n for n in nodes if n.op not in FUSIBLE_POINTWISE), nodes[0])
    return KernelGroup(anchor.name, kind, tuple(nodes), tuple(inputs), tuple(outputs))


def _is_float(v: Value | None) -> bool:
    return v is None or v.dtype in FLOAT_DTYPES


def _pointwise_ok(node: Node) -> bool:
    return (node.op in FUSIBLE_POINTWISE and node.opdef.kind is OpKind.POINTWISE
            and len(node.outputs) == 1 and all(_is_float(v) for v in (*node.inputs,
                                                                      node.output))
            and node.output.type.numel > 0
            and not (node.op == "div" and node.attrs.get("rounding_mode") is not None))


def _broadcasts_to(v: Value, shape: tuple[int, ...]) -> bool:
    if len(v.shape) > len(shape):
        return False
    return all(a in (1, b) for a, b in zip(reversed(v.shape), reversed(shape), strict=False))


def _epilogue(graph: Graph, node: Node, claimed: dict[Node, int],
              order: dict[Node, int]) -> list[Node]:
    """The chain of single-use pointwise consumers of ``node`` keeping its output shape."""
    shape = node.output.shape
    chain: list[Node] = []
    cur = node
    while True:
        out = cur.output
        users = graph.users(out)
        if len(users) != 1 or out in graph.outputs:
            return chain
        nxt = users[0]
        if (nxt in claimed or not _pointwise_ok(nxt) or nxt.output.shape != shape
                or not all(v is None or _broadcasts_to(v, shape) for v in nxt.inputs)
                or not all(_ready(graph, v, node, order) for v in nxt.inputs if v is not out)):
            return chain
        chain.append(nxt)
        cur = nxt


def _ready(graph: Graph, v: Value | None, anchor: Node, order: dict[Node, int]) -> bool:
    """Whether ``v`` is computed before ``anchor`` (so the fused group can read it)."""
    if v is None or graph.is_const(v) or v in graph.inputs:
        return True
    prod = graph.producer(v)
    return prod is not None and order[prod] < order[anchor]


def _prologue(graph: Graph, node: Node, claimed: dict[Node, int]) -> list[Node]:
    """Single-use pointwise producers of a reduction's main input, same shape."""
    x = node.inputs[0]
    prod = graph.producer(x)
    shape = x.shape
    if (prod is None or prod in claimed or not _pointwise_ok(prod) or graph.num_uses(x) != 1
            or x in graph.outputs or prod.output.shape != shape
            or not all(v is None or _broadcasts_to(v, shape) for v in prod.inputs)):
        return []
    return [prod]


def _matmul_ok(graph: Graph, node: Node) -> bool:
    a, b = node.inputs[0], node.inputs[1]
    if not (_is_float(a) and _is_float(b) and a.dtype == b.dtype and node.output.dtype == a.dtype):
        return False
    if node.op == "linear":
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        return (len(b.shape) == 2 and len(a.shape) >= 1
                and (bias is None or bias.shape == (b.shape[0],)))
    return len(a.shape) >= 2 and len(b.shape) >= 2 and (
        len(b.shape) == 2 or a.shape[:-2] == b.shape[:-2])


def _int8_linear_ok(node: Node) -> bool:
    x, w_q = node.inputs[0], node.inputs[1]
    return (_is_float(x) and w_q.dtype == torch.int8 and len(w_q.shape) == 2
            and len(x.shape) >= 1 and x.shape[-1] == w_q.shape[1])


def _token_ok(node: Node) -> bool:
    """Float tokens [B, N, C], guide [B, N, D] (merge) or [B, N] (prune), sizes [B, N, 1]."""
    x, guide = node.inputs[0], node.inputs[1]
    size = node.inputs[2] if len(node.inputs) > 2 else None
    if not (x.dtype in FLOAT_DTYPES and guide.dtype in FLOAT_DTYPES and _is_float(size)
            and len(x.shape) == 3 and all(o.dtype == x.dtype for o in node.outputs)):
        return False
    b, n, _ = x.shape
    p = node.attrs.get("protected", 1)
    if size is not None and size.shape != (b, n, 1):
        return False
    if node.op == "bipartite_merge":
        return (len(guide.shape) == 3 and guide.shape[:2] == (b, n)
                and 0 <= p <= n and 0 <= node.attrs["r"] <= (n - p + 1) // 2)
    return len(guide.shape) == 2 and guide.shape == (b, n) and 0 <= node.attrs["keep"] <= n - p


def _reduction_ok(graph: Graph, node: Node) -> bool:
    x = node.inputs[0]
    if not _is_float(x) or not x.shape or x.shape[-1] > 16384 or x.shape[-1] == 0:
        return False
    rank = len(x.shape)
    a = node.attrs
    if node.op == "softmax":
        return a["dim"] % rank == rank - 1
    if node.op in ("layer_norm", "rms_norm"):
        return len(a["normalized_shape"]) == 1
    return (len(a["dims"]) == 1 and a["dims"][0] % rank == rank - 1 and a.get("dtype") is None)


def _attention_ok(graph: Graph, node: Node) -> bool:
    q, k, v = node.inputs[:3]
    bias = node.inputs[3] if len(node.inputs) > 3 else None
    if not all(t.dtype in FLOAT_DTYPES for t in (q, k, v)) or len(q.shape) != 4:
        return False
    if not (q.shape[:2] == k.shape[:2] == v.shape[:2] and k.shape[-1] == q.shape[-1]
            and q.shape[-1] <= 256 and v.shape[-1] <= 256):
        return False
    return bias is None or (bias.dtype in FLOAT_DTYPES
                            and _broadcasts_to(bias, (*q.shape[:3], k.shape[2])))
