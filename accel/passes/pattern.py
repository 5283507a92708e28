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

Op names in patterns are checked against the IR op registry when the pattern is built (at
import time of the pass module), so a typo fails loudly. Rules are indexed by their root
op, and sweeps after the first only revisit what the last rewrite could have changed (see
:meth:`RewriteRules.apply`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from accel.errors import AccelValueError, PassError
from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.ir.ops import check_op_names, get_op


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
        ops = check_op_names([op] if isinstance(op, str) else op, "Pat")
        for key in attrs or {}:
            for o in sorted(ops):
                if key not in get_op(o).attrs:
                    raise AccelValueError(f"Pat: op '{o}' has no attribute '{key}'; its "
                                          f"attributes: {sorted(get_op(o).attrs) or 'none'}")
        object.__setattr__(self, "op", op if isinstance(op, str) else ops)
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "attrs", dict(attrs or {}))
        object.__setattr__(self, "where", where)
        object.__setattr__(self, "single_use", single_use)
        object.__setattr__(self, "commutative", commutative)
        object.__setattr__(self, "partial", partial)

    @property
    def ops(self) -> frozenset[str]:
        """The op names this pattern's root matches."""
        return frozenset((self.op,)) if isinstance(self.op, str) else self.op

    @property
    def depth(self) -> int:
        """How many producer hops below its root the pattern reaches (0: the root only)."""
        return max((1 + p.depth for p in self.inputs if isinstance(p, Pat)), default=0)


class Match:
    """The bindings of one successful match."""

    def __init__(self, graph: Graph, root: Node) -> None:
        self.graph = graph
        """The graph matched against (the pass's input)."""
        self.root = root
        """The node the pattern's root matched."""
        self.values: dict[str, Value] = {}
        self.nodes: dict[str, Node] = {}
        self.matched: list[Node] = []
        """Every node the pattern matched, named or not (the root first)."""

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
        m.values, m.nodes, m.matched = dict(self.values), dict(self.nodes), list(self.matched)
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
        m2: Match | None = m._copy()
        m2.matched.append(node)
        for sub, v in zip(order, node.inputs, strict=False):
            m2 = _match_value(sub, v, g, m2)
            if m2 is None:
                break
        if m2 is not None:
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


RuleFn = Callable[[Match, Rewriter], "Value | None"]


@dataclass(frozen=True)
class Rule:
    """One registered rule: a pattern and the function rewriting its matches."""

    pattern: Pat
    fn: RuleFn

    @property
    def name(self) -> str:
        """The rule's name: its function's name (the key of ``counts``)."""
        return self.fn.__name__


@dataclass
class SweepStats:
    """What one sweep of :meth:`RewriteRules.apply` did."""

    visited: list[str] = field(default_factory=list)
    """Names of the nodes the rules were tried at, in graph order."""
    attempts: int = 0
    """Pattern matches tried (node x rule)."""
    fired: Counter[str] = field(default_factory=Counter)
    """Rewrites by rule name."""
    where: dict[str, list[str]] = field(default_factory=dict)
    """Root node names of the rewrites, by rule name."""


class RewriteRules:
    """A set of pattern rules applied together until nothing matches.

    Rules are indexed by the op at their root: a node is only tried against the rules whose
    root op can match it, in registration order; the first rule that returns a value wins.
    """

    def __init__(self, name: str, *, max_sweeps: int = 32) -> None:
        self.name = name
        """The rule set's name (the pass name in reports and errors)."""
        self.max_sweeps = max_sweeps
        """Sweeps allowed before the set is declared non-converging (a PassError)."""
        self.rules: list[Rule] = []
        """Every rule, in registration order."""
        self._by_op: dict[str, list[Rule]] = {}
        self._depth = 0

    def rule(self, pattern: Pat) -> Callable[[RuleFn], RuleFn]:
        """Decorator adding ``fn(match, rewriter) -> Value | None`` for ``pattern``."""

        def deco(fn: RuleFn) -> RuleFn:
            r = Rule(pattern, fn)
            self.rules.append(r)
            for op in sorted(pattern.ops):
                self._by_op.setdefault(op, []).append(r)
            self._depth = max(self._depth, pattern.depth)
            return fn

        return deco

    def rules_for(self, op: str) -> list[Rule]:
        """The rules whose root pattern can match a node applying ``op``, in order."""
        return self._by_op.get(op, [])

    def apply(self, graph: Graph, max_sweeps: int | None = None,
              counts: dict[str, int] | None = None, *, worklist: bool = True,
              stats: list[SweepStats] | None = None) -> Graph:
        """Rewrite ``graph`` to a fixpoint; ``counts[rule name]`` tallies the rewrites.

        Each sweep visits the nodes in graph order; a node takes part in at most one
        rewrite per sweep. The first sweep tries every node; with ``worklist`` (the default)
        later sweeps only try the nodes the last rewrites could have changed: nodes created
        or rebuilt, nodes within the deepest pattern's reach downstream of them or of a value
        whose users changed, and nodes a conflicting rewrite made wait. This gives the same
        result as trying every node every sweep (``worklist=False``) as long as rules decide
        from their match: the matched nodes, the values they read and define, and those
        values' users. ``stats``, if given, receives one :class:`SweepStats` per sweep.

        Raises :class:`PassError` naming the rules still firing if the graph has not
        converged after ``max_sweeps`` sweeps (default: the set's ``max_sweeps``).
        """
        limit = self.max_sweeps if max_sweeps is None else max_sweeps
        todo: set[int] | None = None  # ids of the nodes to try; None: every node
        last: deque[SweepStats] = deque(maxlen=2)  # for the non-convergence error
        for _ in range(limit):
            rw = Rewriter(graph, pass_name=self.name)
            sweep = SweepStats()
            revisit = self._sweep(graph, rw, todo, sweep)
            last.append(sweep)
            if stats is not None:
                stats.append(sweep)
            if not sweep.fired:
                return graph
            if counts is not None:
                for k, v in sweep.fired.items():
                    counts[k] = counts.get(k, 0) + v
            new = rw.finish()
            todo = _changed_region(graph, new, revisit, self._depth) if worklist else None
            graph = new
        raise PassError(self._not_converged(limit, list(last)))

    def _sweep(self, graph: Graph, rw: Rewriter, todo: set[int] | None,
               sweep: SweepStats) -> set[int]:
        """One pass over the graph; returns the ids of the nodes to try again next sweep."""
        taken: set[int] = set()  # nodes consumed by a rewrite in this sweep
        waiting: set[int] = set()  # nodes skipped because of a conflicting rewrite
        for node in graph.nodes:
            if todo is not None and id(node) not in todo:
                continue
            candidates = self._by_op.get(node.op)
            if not candidates:
                continue
            sweep.visited.append(node.name)
            if id(node) in taken:
                waiting.add(id(node))
                continue
            for r in candidates:
                sweep.attempts += 1
                m = match(r.pattern, node, graph)
                if m is None:
                    continue
                if any(id(n) in taken for n in m.matched):
                    waiting.add(id(node))
                    continue
                new = r.fn(m, rw)
                if new is None or rw.resolve(new) is node.outputs[0]:
                    continue  # declined, or "replaced" by itself
                rw.replace(node.outputs[0], new)
                taken.update(id(n) for n in m.matched)
                sweep.fired[r.name] += 1
                sweep.where.setdefault(r.name, []).append(node.name)
                break
        return taken | waiting

    def _not_converged(self, limit: int, last: list[SweepStats]) -> str:
        firing: Counter[str] = Counter()
        where: dict[str, list[str]] = {}
        for s in last:
            firing.update(s.fired)
            for k, names in s.where.items():
                where.setdefault(k, []).extend(names)
        parts = []
        for k, n in firing.most_common():
            nodes = list(dict.fromkeys(where[k]))
            more = f" +{len(nodes) - 3} more" if len(nodes) > 3 else ""
            parts.append(f"{k} (x{n}, at {', '.join(nodes[:3])}{more})")
        return (f"rule set '{self.name}' did not converge in {limit} sweeps; rules still "
                f"firing in the last {len(last)} sweep(s): {'; '.join(parts)}. Rules that "
                "undo each other never converge: make one of them decline (return None) "
                "where the other applies, or pass max_sweeps=... if the graph needs more "
                "sweeps")


def _changed_region(old: Graph, new: Graph, revisit: set[int], depth: int) -> set[int]:
    """Ids of the nodes of ``new`` whose match could differ from what it was in ``old``."""
    old_ids = {id(n) for n in old.nodes}
    new_ids = {id(n) for n in new.nodes}
    seeds: list[Node] = []
    values: set[Value] = set()  # values whose users (or output uses) changed
    for n in new.nodes:
        if id(n) not in old_ids:
            seeds.append(n)
            values.update(v for v in n.inputs if v is not None)
        elif id(n) in revisit:
            seeds.append(n)
    for n in old.nodes:
        if id(n) not in new_ids:
            values.update(v for v in n.inputs if v is not None)
    out_old, out_new = Counter(old.outputs), Counter(new.outputs)
    values.update(v for v in out_old.keys() | out_new.keys() if out_old[v] != out_new[v])
    for v in values:
        p = new.producer(v)
        if p is not None:
            seeds.append(p)
        seeds.extend(new.users(v))
    region = {id(n) for n in seeds}
    frontier = seeds
    for _ in range(depth):  # a pattern rooted up to `depth` hops below may see the change
        nxt = []
        for n in frontier:
            for o in n.outputs:
                for u in new.users(o):
                    if id(u) not in region:
                        region.add(id(u))
                        nxt.append(u)
        frontier = nxt
    return region
