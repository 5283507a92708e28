"""What TorchDynamo hands a backend: which graph inputs are weights, graph breaks, capture.

Dynamo hands over a torch-level fx graph whose parameters and buffers arrive as inputs.
For inference they are frozen into constants (as TorchInductor's freezing does). The
backend itself (settings, reports, eager fallbacks) is the front door in
:mod:`accel.torch_compile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx

from accel.frontend.capture import capture_fx
from accel.ir.graph import Graph


class DynamoGraph:
    """A Dynamo graph with its weights told apart: frozen inputs become constants, the other
    tensor inputs are the compiled graph's runtime inputs (in order)."""

    def __init__(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> None:
        self.gm = gm
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.frozen = [_is_weight(n, v) for n, v in zip(placeholders, example_inputs,
                                                        strict=True)]
        """Whether each graph input is a weight (frozen into a constant)."""
        self.runtime_positions = [i for i, (a, f) in enumerate(zip(example_inputs, self.frozen,
                                                                   strict=True))
                                  if isinstance(a, torch.Tensor) and not f]
        """Positions of the runtime (non-weight tensor) inputs."""

    def runtime_inputs(self, args: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        """The runtime inputs among a call's arguments."""
        return tuple(args[i] for i in self.runtime_positions)

    def capture(self, args: Sequence[Any], runtime: Sequence[torch.Tensor]) -> Graph:
        """The IR graph for a call with ``args`` whose runtime inputs are ``runtime``."""
        full = list(args)
        for i, t in zip(self.runtime_positions, runtime, strict=True):
            full[i] = t
        return capture_fx(self.gm, full, self.frozen, name="dynamo_graph")


def _is_weight(node: fx.Node, value: Any) -> bool:
    if isinstance(value, torch.nn.Parameter):
        return True
    grapharg = node.meta.get("grapharg")
    source = getattr(grapharg, "source", None)
    name = getattr(source, "name", "") if source is not None else ""
    name = name() if callable(name) else name
    return "_buffers" in str(name) or "_parameters" in str(name)


_breaks_counted = 0
"""Graph breaks already attributed to a report."""


def new_graph_breaks() -> int:
    """Graph breaks recorded since the last graph handed to the backend."""
    global _breaks_counted
    total = graph_breaks()
    new = total - _breaks_counted if total >= _breaks_counted else total  # counters reset
    _breaks_counted = total
    return new


def graph_breaks() -> int:
    """Graph breaks TorchDynamo has recorded in this process."""
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())
