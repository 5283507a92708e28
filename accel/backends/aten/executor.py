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
from accel.ir.shapes import compile_exprs, is_symbolic
from accel.runtime.schedule import Schedule, sized


class AtenExecutor:
    """Runs every node with its op's reference implementation."""

    name = "aten"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.schedule = Schedule(graph)
        names = self.schedule.size_names
        self.steps = self.schedule.bind([bind(n.opdef.ref, n.attrs, names) for n in graph.nodes])

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute the graph on ``inputs``; returns the output tensors."""
        return self.schedule.run(self.steps, inputs)


def bind(fn: Callable[..., object], attrs: Mapping, size_names: Sequence[str] = ()
         ) -> Callable[..., object]:
    """``fn`` with the node's attributes bound as keyword arguments.

    Symbolic attributes (a reshape to ``(batch*seq, 64)``) are evaluated at each call's sizes
    by an expression compiled here: the step then takes the sizes first (``sized``).
    """
    symbolic = {k: v for k, v in attrs.items() if is_symbolic(v)}
    if not symbolic:
        return functools.partial(fn, **attrs) if attrs else fn
    static = {k: v for k, v in attrs.items() if k not in symbolic}
    keys = tuple(symbolic)
    values = compile_exprs([symbolic[k] for k in keys], size_names)

    def step(sizes: tuple[int, ...], *args: object) -> object:
        return fn(*args, **static, **dict(zip(keys, values(*sizes), strict=True)))
    return sized(step)
