"""Evaluate a graph with each op's reference implementation, optionally observing every
value: what analyses inside the passes (calibration, accuracy reports) run on.

The runtime's executors are for speed; this is the IR's own meaning of a graph, so passes
never reach down into the runtime. Intermediates are released after their last use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from accel.errors import GraphError
from accel.ir.graph import Graph, Value
from accel.ir.shapes import evaluate, is_symbolic, symbol

Observe = Callable[[Value, torch.Tensor], None]


def interpret(graph: Graph, inputs: Sequence[torch.Tensor],
              observe: Observe | None = None) -> list[torch.Tensor]:
    """The graph's outputs on ``inputs``; ``observe(value, tensor)`` sees every node output."""
    last_use: dict[Value, int] = {}
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v is not None:
                last_use[v] = i
    if graph.constants_released:
        raise GraphError(f"graph {graph.name}: its weights were handed to the executor that "
                         "runs it (onnxruntime/OpenVINO own them now), so it cannot be "
                         "interpreted; call the compiled model, or compile with "
                         "target='reference' to keep a runnable graph")
    keep = set(graph.outputs) | set(graph.constants)
    env: dict[Value, torch.Tensor] = dict(graph.constants)
    env.update(zip(graph.inputs, inputs, strict=True))
    sizes = {symbol(name): v for name, v in graph.call_sizes(inputs).items()}
    counted: dict[Value, list[str]] = {}  # counts of computed values: known once computed
    for name, v in graph.computed_counts().items():
        counted.setdefault(v, []).append(name)
    for v in list(counted):
        if v in env:  # a constant
            for name in counted.pop(v):
                sizes[symbol(name)] = int(torch.count_nonzero(env[v]))
    with torch.no_grad():
        for i, n in enumerate(graph.nodes):
            attrs = ({k: evaluate(v, sizes) for k, v in n.attrs.items()}
                     if sizes and is_symbolic(tuple(n.attrs.values())) else n.attrs)
            out = n.opdef.ref(*[env[v] if v is not None else None for v in n.inputs], **attrs)
            for v, t in zip(n.outputs, out if len(n.outputs) > 1 else (out,), strict=True):
                env[v] = t
                for name in counted.get(v, ()):
                    sizes[symbol(name)] = int(torch.count_nonzero(t))
                if observe is not None:
                    observe(v, t)
            for v in n.inputs:
                if v is not None and last_use.get(v) == i and v not in keep:
                    env.pop(v, None)
    return [env[v] for v in graph.outputs]
