"""Declarative pattern rewrites: a pattern reads like the math it replaces.

    x, w, b = Var("x"), Var("w", const=True), Var("b", const=True)
    rules = RewriteRules("fold-double-neg")

    @rules.rule(Pat("neg", Pat("neg", x)))
    def double_neg(m: Match, rw: Rewriter) -> Value:
        return m["x"]

    graph = rules.apply(graph)            # to a fixpoint; returns a new graph

A rule returns the value that replaces the matched root's output, or ``None`` to decline
(the graph is then unchanged by that match). Rules build new nodes with ``rw.op(...)`` and
constants with ``rw.const(...)``; dead nodes disappear when the rewrite finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from accel.ir.graph import Graph, Node, Rewriter, Value


@dataclass(frozen=True, eq=False)
class Var:
    """Matches any value and binds it to ``name`` (the same name must bind the same value)."""

    name: str
    const: bool = False
    """Only match constants."""
    where: Callable[[Value], bool] | None = None
    """Extra predicate on the value."""


@dataclass(frozen=True, eq=False)
class Pat:
    """Matches a node applying ``op`` (a name or a set of names) to inputs matching ``inputs``."""

    op: str | frozenset[str]
    inputs: tuple[Pat | Var | None, ...] = ()
    name: str | None = None
    """Bind the matched node under this name (``m.node(name)``) and its output (``m[name]``)."""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    """Attributes the node must have (equality)."""
    where: Callable[[Node], bool] | None = None
    """Extra predicate on the node."""
    single_use: bool = False
    """Only match if the node's output has exactly one use (safe to fold away)."""
    commutative: bool = False
    """Also try the two inputs swapped (binary ops)."""
    partial: bool = False
    """Allow the node to have more inputs than the pattern lists (optional trailing inputs)."""

    def __init__(
        self,
        op: str | Iterable[str],
        *inputs: Pat | Var | None,
        name: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        where: Callable[[Node], bool] | None = None,
        single_use: bool = False,
        commutative: bool = False,
        partial: bool = False,
    ) -> None:
        object.__setattr__(self, "op", op if isinstance(op, str) else frozenset(op))
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "attrs", dict(attrs or {}))
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "single_use", single_use)
        object.__setattr__(self, "commutative", commutative)
        object.__setattr__(self, "partial", partial)


class Match:
    """The bindings of one successful match."""

    def __init__(self, graph: Graph, root: Node) -> None:
        self.graph = graph
        """The graph matched against (the pass's input)."""
        self.root = root
        """The node the pattern's root matched."""
        self.values: dict[str, Value] = {}
        self.nodes: dict[str, Node] = {}

    def __getitem__(self, name: str) -> Value:
        return self.values[name]

    def node(self, name: str) -> Node:
        """The node bound by ``Pat(..., name=name)``."""
        return self.nodes[name]

    def const(self, name: str) -> torch.Tensor:
        """The tensor of a constant bound by ``Var(name, const=True)``."""
        return self.graph.const(self.values[name])

    def has(self, name: str) -> bool:
        """Whether ``name`` is bound (e.g. an optional bias)."""
        return name in self.values

    def _copy(self) -> Match:
        m = Match(self.graph, self.root)
        m.values, m.nodes = dict(self.values), dict(self.nodes)
        return m


def match(pattern: Pat, node: Node, graph: Graph) -> Match | None:
    """Match ``pattern`` rooted at ``node``; ``None`` if it does not match."""
    return _match_node(pattern, node, graph, Match(graph, node))


def _match_node(p: Pat, node: Node, g: Graph, m: Match) -> Match | None:
    if (node.op != p.op) if isinstance(p.op, str) else (node.op not in p.op):
        return None
    if any(node.attrs.get(k) != v for k, v in p.attrs.items()):
        return None
    if p.where is not None and not p.where(node):
        return None
    if p.single_use and g.num_uses(node.outputs[0]) != 1:
        return None
    n_in = len(node.inputs)
    if n_in < len(p.inputs) and not all(x is None for x in p.inputs[n_in:]):
        return None
    extra_inputs = node.inputs[len(p.inputs):]
    if extra_inputs and not p.partial and any(v is not None for v in extra_inputs):
        return None
    orders = [p.inputs]
    if p.commutative and len(p.inputs) == 2:
        orders.append((p.inputs[1], p.inputs[0]))
    for order in orders:
        m2 = m._copy()
        ok = True
        for sub, v in zip(order, node.inputs, strict=False):
            m2 = _match_value(sub, v, g, m2)
            if m2 is None:
                ok = False
                break
        if ok and m2 is not None:
            if p.name:
                m2.nodes[p.name] = node
                m2.values[p.name] = node.outputs[0]
            return m2
    return None


def _match_value(p: Pat | Var | None, v: Value | None, g: Graph, m: Match) -> Match | None:
    if p is None:
        return m if v is None else None
    if v is None:
        return None
    if isinstance(p, Var):
        if p.const and not g.is_const(v):
            return None
        if p.where is not None and not p.where(v):
            return None
        bound = m.values.get(p.name)
        if bound is not None and bound is not v:
            return None
        m.values[p.name] = v
        return m
    producer = g.producer(v)
    if producer is None or len(producer.outputs) != 1:
        return None
    return _match_node(p, producer, g, m)


Rule = Callable[[Match, Rewriter], "Value | None"]


class RewriteRules:
    """A set of pattern rules applied together until nothing matches."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rules: list[tuple[Pat, Rule]] = []

    def rule(self, pattern: Pat) -> Callable[[Rule], Rule]:
        """Decorator adding ``fn(match, rewriter) -> Value | None`` for ``pattern``."""

        def deco(fn: Rule) -> Rule:
            self.rules.append((pattern, fn))
            return fn

        return deco

    def apply(self, graph: Graph, max_sweeps: int = 10, counts: dict[str, int] | None = None
              ) -> Graph:
        """Rewrite ``graph`` to a fixpoint; ``counts[rule name]`` tallies the rewrites."""
        for _ in range(max_sweeps):
            rw = Rewriter(graph, pass_name=self.name)
            touched: set[int] = set()
            applied = 0
            for node in graph.nodes:
                if id(node) in touched:
                    continue
                for pattern, fn in self.rules:
                    m = match(pattern, node, graph)
                    if m is None or any(id(n) in touched for n in m.nodes.values()):
                        continue
                    new = fn(m, rw)
                    if new is None:
                        continue
                    rw.replace(node.outputs[0], new)
                    touched.add(id(node))
                    touched.update(id(n) for n in m.nodes.values())
                    applied += 1
                    if counts is not None:
                        counts[fn.__name__] = counts.get(fn.__name__, 0) + 1
                    break
            if not applied:
                return graph
            graph = rw.finish()
        return graph
