"""Operator fusion: partition a graph into kernel groups, one kind of the table at a time.

A pure function of the graph and the device. Every node is offered to the kinds of
:data:`~accel.backends.triton.kinds.KINDS` in table order; the first kind whose ``claim``
accepts it takes the node and whatever prologue/epilogue its rule adds. Anchor kinds
(matmul, reductions, attention, single-node kernels) sweep the graph first, so that their
prologues and epilogues are not taken by pointwise chains; chain kinds sweep second; the
last kind (aten) takes every node left. The helpers here are the building blocks of the
kinds' claim rules: :meth:`Claims.epilogue`, :meth:`Claims.prologue`, :func:`broadcasts_to`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from accel.backends.triton.kernel import Device, KernelGroup, KernelKind
from accel.ir.graph import Graph, Node, Value


class Claims:
    """The partitioner's state, handed to each kind's claim rule."""

    def __init__(self, graph: Graph, device: Device,
                 selected: dict[KernelKind, Collection[Node]]) -> None:
        self.graph = graph
        """The graph being partitioned."""
        self.device = device
        """The device lowered for."""
        self.selected = selected
        """Nodes each kind with a ``select`` hook chose for itself."""
        self.order = {n: i for i, n in enumerate(graph.nodes)}
        """Position of each node in the graph."""
        self.claimed: set[Node] = set()
        """Nodes already in a group."""

    def epilogue(self, node: Node, fusible: Callable[[Node], bool]) -> list[Node]:
        """The chain of single-use ``fusible`` consumers of ``node`` (pointwise ops), keeping
        its output shape and reading only values ready before it."""
        g = self.graph
        shape = node.output.shape
        chain: list[Node] = []
        cur = node
        while True:
            out = cur.output
            users = g.users(out)
            if len(users) != 1 or out in g.outputs:
                return chain
            nxt = users[0]
            if (nxt in self.claimed or not fusible(nxt)
                    or nxt.output.shape != shape
                    or not all(v is None or broadcasts_to(v, shape) for v in nxt.inputs)
                    or not all(self._ready(v, node) for v in nxt.inputs if v is not out)):
                return chain
            chain.append(nxt)
            cur = nxt

    def prologue(self, node: Node, fusible: Callable[[Node], bool]) -> list[Node]:
        """The single-use ``fusible`` producer of ``node``'s first input (same shape), or
        nothing."""
        g = self.graph
        x = node.inputs[0]
        prod = g.producer(x)
        if (prod is None or prod in self.claimed or not fusible(prod)
                or g.num_uses(x) != 1 or x in g.outputs or prod.output.shape != x.shape
                or not all(v is None or broadcasts_to(v, x.shape) for v in prod.inputs)):
            return []
        return [prod]

    def _ready(self, v: Value | None, anchor: Node) -> bool:
        """Whether ``v`` is computed before ``anchor`` (so the fused group can read it)."""
        g = self.graph
        if v is None or g.is_const(v) or v in g.inputs:
            return True
        prod = g.producer(v)
        return prod is not None and self.order[prod] < self.order[anchor]


def broadcasts_to(v: Value, shape: tuple[int, ...]) -> bool:
    """Whether ``v`` broadcasts to ``shape`` (numpy rules)."""
    if len(v.shape) > len(shape):
        return False
    return all(a in (1, b) for a, b in zip(reversed(v.shape), reversed(shape), strict=False))


def partition(graph: Graph, kinds: Sequence[KernelKind], device: Device | None = None,
              note: Callable[[str], None] = lambda _: None) -> list[KernelGroup]:
    """Split ``graph`` into kernel groups in execution order (``note`` gets report lines).

    ``kinds`` is the table (:data:`~accel.backends.triton.kinds.KINDS`); one kind must
    claim every op (aten).
    """
    device = device or Device()
    selected: dict[KernelKind, Collection[Node]] = {}
    for kind in kinds:
        if kind.select is not None:
            selected[kind], line = kind.select(graph, device)
            if line:
                note(line)
    claims = Claims(graph, device, selected)
    plans: list[tuple[KernelKind, list[Node]]] = []
    for second in (False, True):
        sweep = [k for k in kinds if k.chains == second and k.ops is not None]
        for node in graph.nodes:
            if node in claims.claimed:
                continue
            for kind in sweep:
                if node.op not in kind.ops:  # type: ignore[operator]
                    continue
                nodes = kind.claim(claims, node)
                if nodes:
                    claims.claimed.update(nodes)
                    plans.append((kind, sorted(nodes, key=claims.order.__getitem__)))
                    break
    rest = [k for k in kinds if k.ops is None]
    for node in graph.nodes:  # every node left: the catch-all kind (aten)
        if node not in claims.claimed:
            plans.append((rest[0], [node]))
    # emit groups in an order where every group's inputs are ready: by last node position
    groups = [_make_group(graph, kind, nodes, device) for kind, nodes in plans]
    groups.sort(key=lambda g: max(claims.order[n] for n in g.nodes))
    return groups


def _make_group(graph: Graph, kind: KernelKind, nodes: list[Node], device: Device
                ) -> KernelGroup:
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
    return KernelGroup(kind, tuple(nodes), tuple(inputs), tuple(outputs), device)
