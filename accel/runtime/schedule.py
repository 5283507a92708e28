"""One schedule for every executor: slots, liveness, the buffer plan and constant outputs.

A backend lowers a graph to a list of :class:`Unit` s in execution order: one node (the aten
executor) or one kernel group (the Triton executor). :class:`Schedule` numbers every value
with a slot, computes where each slot is read for the last time (so peak memory follows
liveness), and plans shared buffers for the outputs of units that write into preallocated
memory. :meth:`Schedule.bind` pairs units with their step functions, once, at lowering;
:meth:`Schedule.run` is the one execution loop every executor calls.

Planned buffers are allocated once per device and thread (an :class:`Arena`), not per call,
and held for the life of the executor (one arena per thread that calls it). For a graph
with symbolic dims the schedule reads each size symbol from the call's inputs
(:meth:`Schedule.sizes`); steps that need sizes (symbolic attributes, kernels with size
arguments) get them, and the arena's buffers grow to the largest call seen. Graph outputs,
and the buffers that reach an output through ops that may alias (views, pass-throughs:
``OpDef.may_alias``), are never planned, so what a call returns is never overwritten by a
later call. The arena is not per CUDA stream: calls of one executor from one thread on two
streams must be synchronised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from accel.errors import GraphError
from accel.ir.graph import Graph, Value
from accel.ir.shapes import Dim, compile_exprs, is_symbolic


@dataclass(frozen=True)
class Unit:
    """What one step reads and writes: a node, or a kernel group of nodes."""

    name: str
    """Node or kernel-group name, for errors and profiles."""
    inputs: tuple[Value | None, ...]
    """Values passed to the step function, in order (``None``: an absent optional input)."""
    outputs: tuple[Value, ...]
    """Values the step produces, in order."""
    into_buffers: bool = False
    """The step writes its outputs into preallocated tensors (``fn(inputs, outputs)``)
    instead of returning them (``fn(*inputs)``)."""
    aliases: bool = False
    """Its outputs may be views of its inputs (shape ops, ATen fallbacks): a planned buffer
    read through such a view lives as long as the view."""


def sized(fn: Callable[..., object]) -> Callable[..., object]:
    """Mark a step function as taking the call's symbol sizes first (see :class:`Step`)."""
    fn.sized = True  # type: ignore[attr-defined]
    return fn


def node_units(graph: Graph) -> list[Unit]:
    """One returning unit per node, in graph order (the aten executor's schedule)."""
    return [Unit(n.name, n.inputs, n.outputs) for n in graph.nodes]


@dataclass(frozen=True)
class Step:
    """One call of a schedule: ``slots[outs] = fn(*slots[ins])``, then clear ``release``."""

    fn: Callable[..., object]
    """Step function (attributes already bound): ``fn(*inputs) -> output(s)``, or
    ``fn(inputs, outputs) -> None`` for a unit writing into buffers."""
    ins: tuple[int, ...]
    """Input slots; absent optional inputs read the schedule's always-empty slot."""
    outs: tuple[int, ...]
    """Output slots."""
    release: tuple[int, ...]
    """Slots to clear after this step (their last read)."""
    name: str
    """Unit name, for errors and profiles."""
    into_buffers: bool = False
    """Called with preallocated outputs (see :class:`Unit`)."""
    sized: bool = False
    """Called with the call's symbol sizes first: ``fn(sizes, *inputs)`` /
    ``fn(sizes, inputs, outputs)`` (see :meth:`Schedule.sizes`)."""


@dataclass(frozen=True)
class BufferPlan:
    """Shared buffers for the outputs of buffer-writing units, reused by liveness."""

    buffer_of: dict[Value, int]
    """Planned buffer of each planned value."""
    sizes: tuple[tuple[Dim, torch.dtype], ...]
    """``(numel, dtype)`` of each buffer (numel an expression for symbolic shapes)."""

    @property
    def nbytes(self) -> Dim:
        """Bytes of all buffers together (an expression for symbolic shapes)."""
        return sum(n * torch.empty((), dtype=d).element_size() for n, d in self.sizes)


class Schedule:
    """Slot assignment, liveness and buffer plan of a graph run as ``units``."""

    def __init__(self, graph: Graph, units: Sequence[Unit] | None = None) -> None:
        self.graph = graph
        self.units: tuple[Unit, ...] = tuple(node_units(graph) if units is None else units)
        self.slot: dict[Value, int] = {}
        for v in (*graph.inputs, *graph.constants, *(o for u in self.units for o in u.outputs)):
            self.slot.setdefault(v, len(self.slot))
        self.empty_slot = len(self.slot)
        """A slot that is always ``None`` (read for absent optional inputs)."""
        self.num_slots = self.empty_slot + 1
        self.input_slots = tuple(self.slot[v] for v in graph.inputs)
        self.output_slots = tuple(self.slot[v] for v in graph.outputs)
        self.const_outputs = frozenset(self.slot[v] for v in graph.outputs
                                       if v in graph.constants)
        """Output slots holding constants: returned as copies, never the weights themselves."""
        self._initial: list = [None] * self.num_slots
        for v, t in graph.constants.items():
            self._initial[self.slot[v]] = t
        self.release_after = self._liveness()
        """Slots each unit reads (or writes) for the last time."""
        self.plan = self._plan_buffers()
        """The buffer plan of the outputs of units that write into buffers."""
        self._arenas = threading.local()
        self.size_names: tuple[str, ...] = graph.size_names
        """The size symbols, in the order of :meth:`sizes`."""
        sources: dict[str, tuple[int, int | None]] = dict(graph.symbol_sources())
        sources.update({n: (i, None) for n, i in graph.count_sources().items()})
        computed = graph.computed_counts()
        missing = [n for n in self.size_names if n not in sources and n not in computed]
        if missing:
            raise GraphError(f"graph {graph.name}: size symbol(s) {', '.join(missing)} are not "
                             "a dim of any input, so a call cannot tell their value")
        position = {n: k for k, n in enumerate(self.size_names)}
        self._sources = tuple(sources.get(n, (-1, None)) for n in self.size_names)
        """Where each size comes from: (input, axis), or (input, None) for a count of the
        input's nonzero entries (a counted symbol); (-1, None) for a computed count."""
        self._const_counts = tuple((position[n], int(torch.count_nonzero(graph.constants[v])))
                                   for n, v in computed.items() if v in graph.constants)
        """(size position, value) of counts of constants, counted once, here."""
        producer = {o: i for i, u in enumerate(self.units) for o in u.outputs}
        late: dict[int, list[tuple[int, int]]] = {}
        for n, v in computed.items():
            if v not in graph.constants:
                late.setdefault(producer[v], []).append((position[n], self.slot[v]))
        self._late: dict[int, tuple[tuple[int, int], ...]] = {
            i: tuple(c) for i, c in late.items()}
        """Per unit: (size position, slot) of the counts of values it computes, counted right
        after it runs (sizes that depend on the data, see ``Graph.computed_counts``)."""

    @property
    def dynamic(self) -> bool:
        """Whether the graph has size symbols (read from each call's inputs)."""
        return bool(self._sources)

    def sizes(self, inputs: Sequence[torch.Tensor]) -> tuple[int, ...]:
        """The value of each size symbol (:attr:`size_names` order) in a call's inputs (0 for
        the counts of computed values, known only once computed: see :meth:`run`)."""
        return tuple(0 if i < 0 else inputs[i].shape[a] if a is not None
                     else int(torch.count_nonzero(inputs[i])) for i, a in self._sources)

    def _liveness(self) -> list[tuple[int, ...]]:
        last_use: dict[int, int] = {}
        for i, u in enumerate(self.units):
            for v in u.inputs:
                if v is not None:
                    last_use[self.slot[v]] = i
        keep = set(self.output_slots) | {self.slot[v] for v in self.graph.constants}
        release: list[list[int]] = [[] for _ in self.units]
        for s, i in last_use.items():
            if s not in keep:
                release[i].append(s)
        for i, u in enumerate(self.units):  # outputs nobody reads are dropped at once
            for o in u.outputs:
                s = self.slot[o]
                if s not in last_use and s not in keep:
                    release[i].append(s)
        return [tuple(r) for r in release]

    def _plan_buffers(self) -> BufferPlan:
        # the planned values each value may alias (itself, or the buffers its views read)
        roots: dict[Value, frozenset[Value]] = {}
        for u in self.units:
            if u.into_buffers:
                for o in u.outputs:
                    roots[o] = frozenset({o})
            elif u.aliases:
                src = frozenset().union(*(roots.get(v, frozenset()) for v in u.inputs if v))
                for o in u.outputs:
                    roots[o] = src
        pinned = frozenset().union(*(roots.get(v, frozenset()) for v in self.graph.outputs))
        last_use: dict[Value, int] = {}
        for i, u in enumerate(self.units):
            for v in u.inputs:
                for r in roots.get(v, ()) if v is not None else ():
                    last_use[r] = i
        buffer_of: dict[Value, int] = {}
        sizes: list[tuple[int, torch.dtype]] = []
        free: list[int] = []
        frees_at: dict[int, list[int]] = {}
        for i, u in enumerate(self.units):
            if u.into_buffers:
                for v in u.outputs:
                    if v in pinned:
                        continue
                    key = (v.type.numel, v.dtype)
                    bid = next((b for b in free if sizes[b] == key), None)
                    if bid is None:
                        bid = len(sizes)
                        sizes.append(key)
                    else:
                        free.remove(bid)
                    buffer_of[v] = bid
                    frees_at.setdefault(max(last_use.get(v, i), i), []).append(bid)
            free.extend(frees_at.pop(i, []))
        return BufferPlan(buffer_of, tuple(sizes))

    def bind(self, fns: Sequence[Callable[..., object]]) -> list[Step]:
        """The steps running each unit with its function (one per unit, in order)."""
        if len(fns) != len(self.units):
            raise ValueError(f"schedule of {self.graph.name}: {len(fns)} step functions for "
                             f"{len(self.units)} units")
        return [Step(fn, tuple(self.empty_slot if v is None else self.slot[v] for v in u.inputs),
                     tuple(self.slot[o] for o in u.outputs), self.release_after[i], u.name,
                     u.into_buffers, sized)
                for i, (u, fn, sized) in enumerate(zip(self.units, fns, self._sized(fns),
                                                      strict=True))]

    def _sized(self, fns: Sequence[Callable[..., object]]) -> list[bool]:
        return [bool(getattr(fn, "sized", False)) for fn in fns]

    def arena(self, device: torch.device) -> Arena:
        """The planned buffers on ``device`` for the calling thread (allocated on first use)."""
        arenas: dict[torch.device, Arena] = self._arenas.__dict__.setdefault("by_device", {})
        arena = arenas.get(device)
        if arena is None:
            arena = arenas[device] = Arena(self, device)
        return arena

    def run(self, steps: Sequence[Step], inputs: Sequence[torch.Tensor],
            arena: Arena | None = None) -> list[torch.Tensor]:
        """Execute ``steps`` (from :meth:`bind`, one per unit in order) on ``inputs``; ``arena``
        holds the outputs of buffer-writing steps. Returns the graph's outputs."""
        slots = self._initial.copy()
        for s, t in zip(self.input_slots, inputs, strict=True):
            slots[s] = t
        sizes: Any = self.sizes(inputs) if self._sources else ()
        if self._late or self._const_counts:
            sizes = list(sizes)
            for k, count in self._const_counts:
                sizes[k] = count
        if arena is not None and sizes:
            arena.fit(sizes)
        for i, st in enumerate(steps):
            args = [slots[j] for j in st.ins]
            if st.into_buffers:
                outs = arena.outputs(i, sizes)  # type: ignore[union-attr]
                if st.sized:
                    st.fn(sizes, args, outs)
                else:
                    st.fn(args, outs)
                for s, o in zip(st.outs, outs, strict=True):
                    slots[s] = o
                out = None
            else:
                out = st.fn(sizes, *args) if st.sized else st.fn(*args)
                if len(st.outs) == 1:
                    slots[st.outs[0]] = out
                else:
                    for s, o in zip(st.outs, out, strict=True):
                        slots[s] = o
            counts = self._late.get(i)
            if counts:  # sizes that depend on the data: known now
                for k, s in counts:
                    sizes[k] = int(torch.count_nonzero(slots[s]))
                if arena is not None:
                    arena.fit(sizes)
            for s in st.release:
                slots[s] = None
        return [slots[s].clone() if s in self.const_outputs else slots[s]
                for s in self.output_slots]


class Arena:
    """The planned buffers of a schedule on one device, and each step's output tensors.

    Static shapes: buffers and views are made once. Symbolic shapes: each buffer grows to
    the largest call seen (never shrinks) and views are cut per call.
    """

    def __init__(self, schedule: Schedule, device: torch.device) -> None:
        self.device = device
        plan, names = schedule.plan.buffer_of, schedule.size_names
        self._dynamic = is_symbolic(tuple(n for n, _ in schedule.plan.sizes)) or any(
            is_symbolic(o.shape) for u in schedule.units if u.into_buffers for o in u.outputs)
        self._dtypes = [d for _, d in schedule.plan.sizes]
        self._numels = compile_exprs([n for n, _ in schedule.plan.sizes], names)
        self.buffers: list[torch.Tensor] = (
            [] if self._dynamic else
            [torch.empty(n, dtype=d, device=device) for n, d in schedule.plan.sizes])
        # per unit: (output index, planned buffer or None, shape) of each output
        self._outs: list[tuple[tuple[int, int | None, Any, torch.dtype], ...]] = []
        self._views: list[list[torch.Tensor | None]] = []
        self._fresh: list[tuple[tuple[int, tuple[int, ...], torch.dtype], ...]] = []
        for u in schedule.units:
            outs = u.outputs if u.into_buffers else ()
            self._outs.append(tuple((i, plan.get(v), v.shape, v.dtype)
                                    for i, v in enumerate(outs)))
            if not self._dynamic:
                self._views.append([self.buffers[plan[v]][:v.type.numel].view(v.shape)
                                    if v in plan else None for v in outs])
                self._fresh.append(tuple((i, v.shape, v.dtype) for i, v in enumerate(outs)
                                         if v not in plan))
        self._shapes = compile_exprs([tuple(o[2] for o in outs) for outs in self._outs], names)
        self._at: tuple[tuple, ...] = ()

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(b.numel() * b.element_size() for b in self.buffers)

    def fit(self, sizes: tuple[int, ...]) -> None:
        """Grow the buffers for a call with these symbol sizes (symbolic schedules)."""
        if not self._dynamic:
            return
        need = self._numels(*sizes)
        if not self.buffers:
            self.buffers = [torch.empty(0, dtype=d, device=self.device) for d in self._dtypes]
        for b, (n, d) in enumerate(zip(need, self._dtypes, strict=True)):
            if self.buffers[b].numel() < n:
                self.buffers[b] = torch.empty(n, dtype=d, device=self.device)
        self._at = self._shapes(*sizes)

    def outputs(self, index: int, sizes: tuple[int, ...] = ()) -> list[torch.Tensor]:
        """Output tensors of unit ``index``: planned views, fresh tensors for graph outputs."""
        if not self._dynamic:
            fresh = self._fresh[index]
            if not fresh:
                return self._views[index]  # type: ignore[return-value]
            outs = list(self._views[index])
            for i, shape, dtype in fresh:
                outs[i] = torch.empty(shape, dtype=dtype, device=self.device)
            return outs  # type: ignore[return-value]
        shapes = self._at[index]
        out = []
        for (_, b, _, dtype), shape in zip(self._outs[index], shapes, strict=True):
            if b is None:
                out.append(torch.empty(shape, dtype=dtype, device=self.device))
            else:
                n = 1
                for d in shape:
                    n *= d
                out.append(self.buffers[b][:n].view(shape))
        return out
