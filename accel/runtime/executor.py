"""The reference executor: runs an IR graph op by op with the ATen reference kernels.

The graph is flattened once into a list of steps over numbered slots; each step calls a
pre-bound function and releases the slots whose last use it was, so peak memory follows
liveness. Other executors (Triton, onnxruntime) reuse :class:`Step`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from accel.ir.graph import Graph, Value


@dataclass(frozen=True)
class Step:
    """One call in a schedule: ``slots[outs] = fn(*slots[ins])``, then free ``release``."""

    fn: Callable[..., object]
    """Function called with the input tensors (attributes already bound)."""
    ins: tuple[int | None, ...]
    """Input slot numbers; ``None`` passes ``None`` (an absent optional input)."""
    outs: tuple[int, ...]
    """Output slot numbers."""
    release: tuple[int, ...]
    """Slots to clear after this step (their last use)."""
    name: str
    """Node (or kernel group) name, for errors and profiles."""


class Schedule:
    """Slot assignment and liveness for a graph, shared by executors."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.slot: dict[Value, int] = {}
        for v in (*graph.inputs, *graph.constants, *(o for n in graph.nodes for o in n.outputs)):
            self.slot[v] = len(self.slot)
        last_use: dict[int, int] = {}
        for i, n in enumerate(graph.nodes):
            for v in n.inputs:
                if v is not None:
                    last_use[self.slot[v]] = i
        keep = {self.slot[v] for v in graph.outputs} | {self.slot[v] for v in graph.constants}
        self.release_after: list[list[int]] = [[] for _ in graph.nodes]
        for s, i in last_use.items():
            if s not in keep:
                self.release_after[i].append(s)
        for i, n in enumerate(graph.nodes):  # outputs nobody reads are dropped at once
            for o in n.outputs:
                s = self.slot[o]
                if s not in last_use and s not in keep:
                    self.release_after[i].append(s)

    def step(self, index: int, fn: Callable[..., object]) -> Step:
        """A step running node ``index`` of the graph with ``fn``."""
        n = self.graph.nodes[index]
        return Step(fn, tuple(self.slot[v] if v is not None else None for v in n.inputs),
                    tuple(self.slot[o] for o in n.outputs), tuple(self.release_after[index]),
                    n.name)


class AtenExecutor:
    """Runs every node with its op's reference implementation."""

    name = "aten"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        sched = Schedule(graph)
        self.num_slots = len(sched.slot)
        self.input_slots = tuple(sched.slot[v] for v in graph.inputs)
        self.output_slots = tuple(sched.slot[v] for v in graph.outputs)
        self.constants = tuple((sched.slot[v], t) for v, t in graph.constants.items())
        self.steps = [sched.step(i, bind(n.opdef.ref, n.attrs)) for i, n in enumerate(graph.nodes)]
        self._const_outputs = {sched.slot[v] for v in graph.outputs if v in graph.constants}

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute the graph on ``inputs``; returns the output tensors."""
        slots: list = [None] * self.num_slots
        for s, t in self.constants:
            slots[s] = t
        for s, t in zip(self.input_slots, inputs, strict=True):
            slots[s] = t
        for st in self.steps:
            out = st.fn(*[slots[i] if i is not None else None for i in st.ins])
            if len(st.outs) == 1:
                slots[st.outs[0]] = out
            else:
                for s, o in zip(st.outs, out, strict=True):
                    slots[s] = o
            for s in st.release:
                slots[s] = None
        return [slots[s].clone() if s in self._const_outputs else slots[s]
                for s in self.output_slots]


def bind(fn: Callable[..., object], attrs: dict) -> Callable[..., object]:
    """``fn`` with the node's attributes bound as keyword arguments."""
    return functools.partial(fn, **attrs) if attrs else fn
