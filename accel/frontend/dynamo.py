"""What TorchDynamo hands a backend: which graph inputs are weights, graph breaks, capture.

Dynamo hands over a torch-level fx graph whose parameters and buffers arrive as inputs.
For inference they are frozen into constants (as TorchInductor's freezing does). The
backend itself (settings, reports, eager fallbacks) is the front door in
:mod:`accel.torch_compile`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import sympy
import torch
import torch.fx as fx
from torch.export import Dim

from accel.frontend.capture import capture_fx
from accel.ir.graph import Graph


class DynamoGraph:
    """A Dynamo graph with its weights told apart: frozen inputs become constants, the other
    tensor inputs are the compiled graph's runtime inputs (in order).

    A graph Dynamo traced with symbolic sizes (automatic dynamic, ``dynamic=True``,
    ``mark_dynamic``) takes those sizes as extra ``SymInt`` inputs. They are read from the
    tensor inputs' shapes instead (the graph is rewritten to compute them), so they are not
    part of the call's key, and the symbolic tensor dims are captured symbolic: one compile
    serves every size.
    """

    def __init__(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> None:
        self.original = gm
        """The graph as Dynamo handed it (what runs eagerly if accel cannot compile it)."""
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.frozen = [_is_weight(n, v) for n, v in zip(placeholders, example_inputs,
                                                        strict=True)]
        """Whether each graph input is a weight (frozen into a constant)."""
        self.runtime_positions = [i for i, (a, f) in enumerate(zip(example_inputs, self.frozen,
                                                                   strict=True))
                                  if isinstance(a, torch.Tensor) and not f]
        """Positions of the runtime (non-weight tensor) inputs."""
        self.size_positions, self.dynamic_shapes, self.gm = _sizes_from_shapes(
            gm, placeholders, example_inputs, self.frozen)
        """Positions of the SymInt inputs read from tensor shapes; the torch.export spec of
        the tensors' symbolic dims (``None``: a static graph); the graph to capture."""

    def runtime_inputs(self, args: Sequence[Any]) -> tuple[torch.Tensor, ...]:
        """The runtime inputs among a call's arguments."""
        return tuple(args[i] for i in self.runtime_positions)

    def key(self, args: Sequence[Any]) -> tuple:
        """The non-tensor arguments a compile is specialized on (sizes read from shapes are
        not)."""
        return tuple(a for i, a in enumerate(args)
                     if not isinstance(a, torch.Tensor) and i not in self.size_positions)

    def capture(self, args: Sequence[Any], runtime: Sequence[torch.Tensor]) -> Graph:
        """The IR graph for a call with ``args`` whose runtime inputs are ``runtime``."""
        full = list(args)
        for i, t in zip(self.runtime_positions, runtime, strict=True):
            full[i] = t
        keep = [i for i in range(len(full)) if i not in self.size_positions]
        spec = (None if self.dynamic_shapes is None
                else [self.dynamic_shapes[i] for i in keep])
        return capture_fx(self.gm, [full[i] for i in keep],
                          [self.frozen[i] for i in keep], name="dynamo_graph",
                          dynamic_shapes=spec)


def _sizes_from_shapes(gm: fx.GraphModule, placeholders: list[fx.Node],
                       example_inputs: Sequence[Any], frozen: Sequence[bool]
                       ) -> tuple[frozenset[int], list[Any] | None, fx.GraphModule]:
    """(SymInt input positions, export spec, graph with those inputs computed from shapes)."""
    where: dict[Any, tuple[fx.Node, int]] = {}  # symbol -> (tensor placeholder, axis)
    spec: list[Any] = []
    for n, f in zip(placeholders, frozen, strict=True):
        val = n.meta.get("example_value")
        axes = {}
        if isinstance(val, torch.Tensor) and not f:
            for a, d in enumerate(val.shape):
                if isinstance(d, torch.SymInt):
                    axes[a] = Dim.AUTO
                    if isinstance(d.node.expr, sympy.Symbol):
                        where.setdefault(d.node.expr, (n, a))
        spec.append(axes or None)
    sizes = {}
    for i, n in enumerate(placeholders):
        val = n.meta.get("example_value")
        if isinstance(val, torch.SymInt) and val.node.expr in where:
            sizes[i] = n
    floats = [i for i, n in enumerate(placeholders)
              if getattr(n.meta.get("grapharg"), "pass_arg_as_tensor", False)]
    if not where and not floats:
        return frozenset(), None, gm
    gm = copy.deepcopy(gm)
    nodes = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i in floats:  # `float_input.item()` becomes the float: no data-dependent size at export
        value = example_inputs[i].item()
        for user in [u for u in nodes[i].users if u.op == "call_method" and u.target == "item"]:
            for consumer in list(user.users):
                consumer.args = fx.node.map_arg(consumer.args,
                                                lambda a, u=user, v=value: v if a is u else a)
                consumer.kwargs = fx.node.map_arg(consumer.kwargs,
                                                  lambda a, u=user, v=value: v if a is u else a)
            gm.graph.erase_node(user)
    if not where:
        gm.recompile()
        return frozenset(), None, gm
    last = nodes[-1]
    for i, old in sizes.items():
        tensor, axis = where[old.meta["example_value"].node.expr]
        src = next(n for n in nodes if n.name == tensor.name)
        with gm.graph.inserting_after(last):
            size = gm.graph.call_function(torch.ops.aten.sym_size.int, (src, axis))
        nodes[i].replace_all_uses_with(size)
        gm.graph.erase_node(nodes[i])
        last = size
    gm.recompile()
    return frozenset(sizes), spec, gm


def _is_weight(node: fx.Node, value: Any) -> bool:
    """Parameters, buffers, and Python floats Dynamo passes as 0-d tensors (``dynamic=True``
    does not specialize floats, e.g. a LayerNorm's eps): constants of the compiled graph."""
    if isinstance(value, torch.nn.Parameter):
        return True
    grapharg = node.meta.get("grapharg")
    if getattr(grapharg, "pass_arg_as_tensor", False):
        return True
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
