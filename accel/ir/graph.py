"""The IR: typed SSA dataflow graphs of immutable nodes.

A :class:`Graph` is immutable. Passes build a new one through a :class:`Rewriter`, the only
mutation API: it records new nodes and value substitutions, then ``finish()`` returns a
fresh, topologically ordered graph with dead nodes and unused constants dropped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import sympy
import torch

from accel.errors import GraphError
from accel.ir.ops import get_op
from accel.ir.ops.registry import OpDef, OpKind
from accel.ir.shapes import SymbolInfo, at_hints, symbol
from accel.ir.types import TensorType

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, eq=False)
class Value:
    """A tensor flowing through the graph. Identity is the object itself."""

    name: str
    """Unique name within its graph; used by the printer."""
    type: TensorType
    """Static shape, dtype and device."""
    annotations: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """Extra facts: quantization params, sparsity layout, token sizes..."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shorthand for ``type.shape``."""
        return self.type.shape

    @property
    def dtype(self) -> torch.dtype:
        """Shorthand for ``type.dtype``."""
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(frozen=True, eq=False)
class Node:
    """One op application: inputs -> outputs. Immutable; rewrite with a :class:`Rewriter`."""

    op: str
    """Registered op name."""
    inputs: tuple[Value | None, ...]
    """Input values; ``None`` where an optional input is absent."""
    attrs: Mapping[str, Any]
    """Attribute values, validated against the op's schema (hashable)."""
    outputs: tuple[Value, ...]
    """Values this node defines."""
    name: str
    """Unique node name (for errors, reports and exclusion options)."""
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """Provenance: ``source`` (module path / stack), ``pass`` that created it..."""

    @property
    def opdef(self) -> OpDef:
        """The registry entry of this node's op."""
        return get_op(self.op)

    @property
    def output(self) -> Value:
        """The single output (error if the node has several)."""
        if len(self.outputs) != 1:
            raise GraphError(f"node {self.name} ({self.op}) has {len(self.outputs)} outputs")
        return self.outputs[0]

    def flops(self) -> Any:
        """FLOPs of one execution, from the op's cost model (an expression for symbolic
        shapes; :meth:`Graph.flops` evaluates it at the example sizes)."""
        ins = [None if v is None else v.type for v in self.inputs]
        return self.opdef.count_flops(ins, [o.type for o in self.outputs], self.attrs)

    def bytes(self) -> int:
        """Bytes read and written, counting each input and output once."""
        return sum(v.type.nbytes for v in itertools.chain(self.inputs, self.outputs) if v)

    def __repr__(self) -> str:
        return f"Node({self.name}: {self.op})"


class Graph:
    """An immutable typed dataflow graph with constant tensors (frozen weights)."""

    def __init__(
        self,
        inputs: Sequence[Value],
        outputs: Sequence[Value],
        nodes: Sequence[Node],
        constants: Mapping[Value, torch.Tensor],
        name: str = "graph",
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.inputs: tuple[Value, ...] = tuple(inputs)
        """Runtime inputs, in call order."""
        self.outputs: tuple[Value, ...] = tuple(outputs)
        """Values returned, in order."""
        self.nodes: tuple[Node, ...] = tuple(nodes)
        """Nodes in a topological order."""
        self.constants: Mapping[Value, torch.Tensor] = MappingProxyType(dict(constants))
        """Frozen tensors (weights, buffers, folded values) by value."""
        self.name = name
        """Graph name, for printing and dumps."""
        self.meta: Mapping[str, Any] = MappingProxyType(dict(meta or {}))
        """Graph-level facts: output structure, source model, pass notes."""

    # ---- queries ------------------------------------------------------------------------
    @cached_property
    def _producers(self) -> dict[Value, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    @cached_property
    def _users(self) -> dict[Value, list[Node]]:
        users: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    users.setdefault(v, []).append(n)
        return users

    def producer(self, value: Value) -> Node | None:
        """The node defining ``value`` (``None`` for inputs and constants)."""
        return self._producers.get(value)

    def users(self, value: Value) -> list[Node]:
        """Nodes reading ``value``, in graph order (a node reading it twice appears twice)."""
        return self._users.get(value, [])

    def num_uses(self, value: Value) -> int:
        """Number of reads of ``value``, graph outputs included."""
        return len(self.users(value)) + sum(o is value for o in self.outputs)

    def is_const(self, value: Value | None) -> bool:
        """Whether ``value`` is a constant tensor."""
        return value is not None and value in self.constants

    def const(self, value: Value) -> torch.Tensor:
        """The tensor of a constant value."""
        try:
            return self.constants[value]
        except KeyError:
            raise GraphError(f"value %{value.name} is not a constant") from None

    RELEASE_MIN_BYTES = 4096
    """Constants at least this large are dropped by :meth:`release_constants`."""

    def _meta_constants(self) -> dict[Value, torch.Tensor]:
        return {v: t.to("meta") if t.numel() * t.element_size() >= self.RELEASE_MIN_BYTES
                else t for v, t in self.constants.items()}

    def release_constants(self) -> None:
        """Drop the data of large constants (shapes and dtypes stay, as meta tensors), once
        an executor holds its own copy of the weights. The graph still prints, verifies and
        exports its structure; it can no longer be run (see :attr:`constants_released`)."""
        self.constants = MappingProxyType(self._meta_constants())

    def without_constants(self) -> Graph:
        """A copy of this graph with large constants' data dropped, as
        :meth:`release_constants`."""
        return Graph(self.inputs, self.outputs, self.nodes, self._meta_constants(), self.name,
                     self.meta)

    @property
    def constants_released(self) -> bool:
        """Whether some constants hold no data (released to an executor)."""
        return any(t.device.type == "meta" for t in self.constants.values())

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(f"graph {self.name} has no node named '{name}'")

    def find(self, op: str) -> list[Node]:
        """Nodes applying ``op``."""
        return [n for n in self.nodes if n.op == op]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    # ---- symbolic shapes ----------------------------------------------------------------
    @property
    def symbols(self) -> Mapping[str, SymbolInfo]:
        """The size symbols of symbolic dims, with their ranges and example values."""
        return self.meta.get("symbols", _EMPTY)

    @property
    def size_names(self) -> tuple[str, ...]:
        """The size symbols in the order executors pass their values (sorted by name)."""
        return tuple(sorted(self.symbols))

    @property
    def is_dynamic(self) -> bool:
        """Whether any input has a symbolic dim."""
        return any(not v.type.is_static for v in self.inputs)

    def symbol_sources(self) -> dict[str, tuple[int, int]]:
        """For each size symbol, the first (input index, axis) whose dim is that symbol: where
        a call's inputs give its value."""
        out: dict[str, tuple[int, int]] = {}
        for i, v in enumerate(self.inputs):
            for axis, d in enumerate(v.type.shape):
                if isinstance(d, sympy.Symbol) and d.name not in out:
                    out[d.name] = (i, axis)
        return out

    def counted_symbols(self) -> dict[str, Value]:
        """Each *counted* size symbol that no input dim gives, with the value whose number of
        nonzero entries it is (a size that depends on the data). The node that introduces
        such a size defines its symbol (an op with ``defines_count``: ``nonzero``,
        ``token_offsets``; the symbol counts that node's first input, an input of the graph or
        a value computed in it); :meth:`Rewriter.add_counted_symbol` declares its range."""
        dims = self.symbol_sources()
        out: dict[str, Value] = {}
        for n in self.nodes:
            if n.opdef.defines_count and n.attrs["count"] not in dims:
                out.setdefault(n.attrs["count"], n.inputs[0])
        for name, v in self.meta.get("counted_symbols", _EMPTY).items():
            if name not in dims and name not in out and v in self.inputs:
                out[name] = v
        return out

    def count_sources(self) -> dict[str, int]:
        """For each counted size symbol of an *input* (the number of nonzero entries of an
        input, such as the real tokens of a padding mask: see :mod:`accel.ir.ops.padding`),
        the index of the input a call counts."""
        return {name: self.inputs.index(v) for name, v in self.counted_symbols().items()
                if v in self.inputs}

    def computed_counts(self) -> dict[str, Value]:
        """The counted size symbols of values computed in the graph (not inputs): a call
        knows them once it has computed the value (see :meth:`counted_symbols`)."""
        return {name: v for name, v in self.counted_symbols().items() if v not in self.inputs}

    def call_sizes(self, inputs: Sequence[torch.Tensor]) -> dict[str, int]:
        """The value of each size symbol a call's ``inputs`` give, by name (not those of
        :meth:`computed_counts`, which need the graph run)."""
        out = {name: inputs[i].shape[a] for name, (i, a) in self.symbol_sources().items()}
        for name, i in self.count_sources().items():
            out[name] = int(torch.count_nonzero(inputs[i]))
        return out

    # ---- statistics ---------------------------------------------------------------------
    def flops(self) -> int:
        """Total FLOPs of one execution, from the op cost models (symbolic dims at their
        example values)."""
        return int(at_hints(sum(n.flops() for n in self.nodes), self.symbols))

    def num_params(self) -> int:
        """Number of elements in constant tensors (weights)."""
        used = {v for n in self.nodes for v in n.inputs if v is not None} | set(self.outputs)
        return sum(t.numel() for v, t in self.constants.items() if v in used)

    def op_counts(self) -> dict[str, int]:
        """How many nodes apply each op."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def fallbacks(self) -> list[Node]:
        """Nodes that run an ATen op without an IR lowering."""
        return [n for n in self.nodes if n.opdef.kind is OpKind.FALLBACK]

    # ---- views --------------------------------------------------------------------------
    def rewriter(self) -> Rewriter:
        """A rewriter producing a new graph from this one."""
        return Rewriter(self)

    def python(self) -> str:
        """Readable, runnable Python source of this graph (see :mod:`accel.ir.printer`)."""
        from accel.ir.printer import print_graph

        return print_graph(self)

    def verify(self) -> None:
        """Check the graph's invariants; raise :class:`GraphError` on the first violation."""
        from accel.ir.verifier import verify

        verify(self)

    def to_networkx(self):  # noqa: ANN201 - networkx is optional at import time
        """The graph as a ``networkx.DiGraph`` of node names (edges follow data)."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.name, op=n.op)
            for v in n.inputs:
                p = self.producer(v) if v is not None else None
                if p is not None:
                    g.add_edge(p.name, n.name, value=v.name)
        return g

    def __str__(self) -> str:
        return self.python()

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.nodes)} nodes, {len(self.constants)} constants>"


_NAME_RE = re.compile(r"[^0-9a-zA-Z_]")


def clean_name(hint: str) -> str:
    """A valid Python identifier derived from ``hint``."""
    name = _NAME_RE.sub("_", hint).strip("_") or "v"
    return f"v_{name}" if name[0].isdigit() else name


class Rewriter:
    """The one way to change a graph: record edits, then ``finish()`` a new :class:`Graph`.

    Edits never touch the source graph: nodes are immutable and substitutions are applied
    when the new graph is built. New nodes may be created in any order; ``finish()``
    re-sorts topologically (each node right before its first consumer) and drops nodes and
    constants that no output depends on.
    """

    def __init__(self, graph: Graph | None = None, *, pass_name: str | None = None) -> None:
        base = graph if graph is not None else Graph((), (), (), {})
        self.base = base
        self.pass_name = pass_name
        self.inputs: list[Value] = list(base.inputs)
        self.outputs: list[Value] = list(base.outputs)
        self.nodes: list[Node] = list(base.nodes)
        self.constants: dict[Value, torch.Tensor] = dict(base.constants)
        self.meta: dict[str, Any] = dict(base.meta)
        self._subst: dict[Value, Value] = {}
        self._removed: set[int] = set()
        self._names: set[str] = {v.name for v in base.inputs} | {v.name for v in base.constants}
        self._names |= {o.name for n in base.nodes for o in n.outputs}
        self._names |= {n.name for n in base.nodes}
        self.changed = False

    # ---- names --------------------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        """A name not used in the graph, derived from ``hint``."""
        base = clean_name(hint)
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    # ---- building -----------------------------------------------------------------------
    def add_counted_symbol(self, name: str, counted: Value, *, hint: int, hi: int | None,
                           lo: int = 1) -> sympy.Symbol:
        """Declare the size symbol ``name`` whose value is the number of nonzero entries of
        ``counted`` (range ``[lo, hi]``, example ``hint``; see :meth:`Graph.counted_symbols`:
        the node that defines it names it in its ``count`` attribute)."""
        sym = self.add_symbol(name, hint=max(hint, lo), lo=lo, hi=hi)
        if counted in self.inputs:  # (a node that defines it names it in its attributes)
            counted_table = dict(self.meta.get("counted_symbols", {}))
            counted_table[name] = counted
            self.meta["counted_symbols"] = MappingProxyType(counted_table)
        return sym

    def add_symbol(self, name: str, *, hint: int, lo: int = 2, hi: int | None = None
                   ) -> sympy.Symbol:
        """Declare the size symbol ``name`` (range ``[lo, hi]``, example value ``hint``) for
        symbolic dims of inputs; returns the symbol to use in shapes."""
        table = dict(self.meta.get("symbols", {}))
        table[name] = SymbolInfo(name, lo, hi, hint)
        self.meta["symbols"] = MappingProxyType(table)
        self.changed = True
        return symbol(name)

    def add_input(self, name: str, type_: TensorType) -> Value:
        """Append a runtime input."""
        v = Value(self.fresh_name(name), type_)
        self.inputs.append(v)
        self.changed = True
        return v

    def const(self, tensor: torch.Tensor, name: str = "c") -> Value:
        """A new constant value holding ``tensor`` (detached; never aliases user memory)."""
        t = tensor.detach()
        v = Value(self.fresh_name(name), TensorType.of(t))
        self.constants[v] = t
        self.changed = True
        return v

    def op(
        self,
        op: str,
        *inputs: Value | None,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        **attrs: Any,
    ) -> Value:
        """Apply ``op`` to ``inputs``; returns the single output value."""
        node = self.node(op, *inputs, name=name, meta=meta, **attrs)
        return node.output

    def node(
        self,
        op: str,
        *inputs: Value | None,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        **attrs: Any,
    ) -> Node:
        """Apply ``op`` to ``inputs``; returns the new node (for multi-output ops)."""
        opdef = get_op(op)
        node_name = self.fresh_name(name or op)
        inputs = tuple(self.resolve(v) if v is not None else None for v in inputs)
        while inputs and inputs[-1] is None and not opdef.variadic:
            inputs = inputs[:-1]
        opdef.check_inputs(len(inputs), node_name)
        attrs = opdef.normalize_attrs(attrs, node_name)
        types = opdef.infer_types([v.type if v is not None else None for v in inputs], attrs,
                                  self.meta.get("symbols"))
        if len(types) == 1:
            outs = (Value(node_name, types[0]),)
        else:
            outs = tuple(Value(self.fresh_name(f"{node_name}_{i}"), t) for i, t in enumerate(types))
        full_meta = dict(meta or {})
        if self.pass_name and "pass" not in full_meta:
            full_meta["pass"] = self.pass_name
        node = Node(op, inputs, MappingProxyType(attrs), outs, node_name,
                    MappingProxyType(full_meta))
        self.nodes.append(node)
        self.changed = True
        return node

    # ---- editing ------------------------------------------------------------------------
    def resolve(self, value: Value) -> Value:
        """The value that currently stands for ``value`` after substitutions."""
        seen = 0
        while value in self._subst:
            value = self._subst[value]
            seen += 1
            if seen > 10_000:
                raise GraphError("cyclic value substitution in rewriter")
        return value

    def replace(self, old: Value, new: Value, *, check_type: bool = True) -> None:
        """Make every use of ``old`` (graph outputs included) read ``new`` instead."""
        new = self.resolve(new)
        if old is new:
            return
        if check_type and (old.type.shape != new.type.shape or old.type.dtype != new.type.dtype):
            where = f" in pass {self.pass_name}" if self.pass_name else ""
            raise GraphError(
                f"cannot replace %{old.name}: {old.type} with %{new.name}: {new.type}{where}: "
                "types differ"
            )
        self._subst[old] = new
        self.changed = True

    def remove(self, node: Node) -> None:
        """Drop ``node``; its outputs must be unused once the rewrite finishes."""
        self._removed.add(id(node))
        self.changed = True

    def annotate(self, value: Value, **annotations: Any) -> Value:
        """Return a copy of ``value`` with extra annotations and substitute it everywhere."""
        value = self.resolve(value)
        merged = MappingProxyType({**value.annotations, **annotations})
        new = Value(value.name, value.type, merged)
        if value in self.constants:
            self.constants[new] = self.constants.pop(value)
        self.inputs = [new if v is value else v for v in self.inputs]
        for i, n in enumerate(self.nodes):  # the producer now defines the annotated value
            if value in n.outputs:
                outs = tuple(new if o is value else o for o in n.outputs)
                self.nodes[i] = Node(n.op, n.inputs, n.attrs, outs, n.name, n.meta)
                break
        self._subst[value] = new
        self.changed = True
        return new

    def set_outputs(self, outputs: Iterable[Value]) -> None:
        """Set the graph's outputs."""
        self.outputs = list(outputs)
        self.changed = True

    # ---- finishing ----------------------------------------------------------------------
    def finish(self, name: str | None = None) -> Graph:
        """Build the new graph: apply substitutions, sort, drop dead nodes and constants."""
        live_nodes = [n for n in self.nodes if id(n) not in self._removed]
        rebuilt: list[Node] = []
        for n in live_nodes:
            ins = tuple(self.resolve(v) if v is not None else None for v in n.inputs)
            if any(a is not b for a, b in zip(ins, n.inputs, strict=True)):
                n = Node(n.op, ins, n.attrs, n.outputs, n.name, n.meta)
            rebuilt.append(n)
        outputs = [self.resolve(v) for v in self.outputs]
        producer = {o: n for n in rebuilt for o in n.outputs}
        order = _topo_from_outputs(outputs, producer, _count_users(rebuilt))
        used = {v for n in order for v in n.inputs if v is not None} | set(outputs)
        defined = set(self.inputs) | set(self.constants) | {o for n in order for o in n.outputs}
        for v in used - defined:
            where = f" after pass {self.pass_name}" if self.pass_name else ""
            raise GraphError(f"value %{v.name} is used but never defined{where}")
        constants = {v: t for v, t in self.constants.items() if v in used}
        return Graph(self.inputs, outputs, order, constants, name or self.base.name, self.meta)


def _count_users(nodes: Sequence[Node]) -> dict[int, list[Node]]:
    """For each node (by id) whose attributes or output shapes use a counted size symbol
    that a node computes (``OpDef.defines_count``), the nodes defining those symbols: a node
    must run after the count it uses is known, even where no data flows between them
    (``new_zeros(x[mask].shape[0])``), and the count's node stays alive for it."""
    definers = {n.attrs["count"]: n for n in nodes if n.opdef.defines_count}
    if not definers:
        return {}
    from accel.ir.shapes import free_symbols

    out: dict[int, list[Node]] = {}
    for n in nodes:
        used = free_symbols((tuple(n.attrs.values()), tuple(o.shape for o in n.outputs)))
        deps = [definers[s.name] for s in used if s.name in definers
                and definers[s.name] is not n]
        if deps:
            out[id(n)] = deps
    return out


def _topo_from_outputs(outputs: Sequence[Value], producer: Mapping[Value, Node],
                       after: Mapping[int, Sequence[Node]] | None = None) -> list[Node]:
    """Nodes reachable from ``outputs``, each placed after all of its inputs' producers (and
    after the nodes ``after[id(node)]`` names: see :func:`_count_users`)."""
    order: list[Node] = []
    state: dict[int, int] = {}  # 1 = on the stack, 2 = emitted
    for out in outputs:
        root = producer.get(out)
        if root is None or state.get(id(root)) == 2:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        state[id(root)] = 1
        while stack:
            node, i = stack.pop()
            extra = after.get(id(node), ()) if after else ()
            if i < len(node.inputs) + len(extra):
                stack.append((node, i + 1))
                if i < len(node.inputs):
                    v = node.inputs[i]
                    p = producer.get(v) if v is not None else None
                else:
                    p = extra[i - len(node.inputs)]
                if p is not None:
                    s = state.get(id(p))
                    if s == 1:
                        raise GraphError(f"cycle through node {p.name}")
                    if s is None:
                        state[id(p)] = 1
                        stack.append((p, 0))
            else:
                state[id(node)] = 2
                order.append(node)
    return order
