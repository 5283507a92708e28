"""The reference executor: runs an IR graph op by op with the ATen reference kernels.

The graph is scheduled once (one unit per node, :class:`~accel.runtime.schedule.Schedule`):
each step calls a pre-bound function and releases the slots whose last read it was, so
peak memory follows liveness.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch

from accel.ir.graph import Graph
from accel.runtime.schedule import Schedule


class AtenExecutor:
    """Runs every node with its op's reference implementation."""

    name = "aten"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.schedule = Schedule(graph)
        self.steps = self.schedule.bind([bind(n.opdef.ref, n.attrs) for n in graph.nodes])

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute the graph on ``inputs``; returns the output tensors."""
        return self.schedule.run(self.steps, inputs)


def bind(fn: Callable[..., object], attrs: Mapping) -> Callable[..., object]:
    """``fn`` with the node's attributes bound as keyword arguments."""
    return functools.partial(fn, **attrs) if attrs else fn
