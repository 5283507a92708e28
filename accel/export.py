"""``accel.export_onnx``: the optimized graph as a standard-op ONNX file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accel.backends.onnx.exporter import MIN_OPSET, check_writable, graph_to_onnx, save_model
from accel.ir.graph import Graph
from accel.runtime import CompiledModel


def optimized_graph(model_or_compiled: Any, example_inputs: Any,
                    pipeline: str = "default") -> Graph:
    """The graph to export: a compiled model's, or ``model`` captured and optimized."""
    if isinstance(model_or_compiled, CompiledModel):
        return model_or_compiled.graph
    if isinstance(model_or_compiled, Graph):
        return model_or_compiled
    import accel

    return accel.compile(model_or_compiled, example_inputs, pipeline=pipeline,
                         target="reference").graph


def export_onnx(
    model_or_compiled: Any,
    example_inputs: Any,
    path: str | os.PathLike,
    pipeline: str = "default",
    opset: int = MIN_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export the optimized graph of a model (or a ``CompiledModel``) to ONNX at ``path``.

    Standard ONNX ops only (default domain), ``opset`` 17 or newer, weights as initializers
    (external data next to the file beyond 2 GB). With ``dynamic_batch``, dim 0 of inputs
    and outputs is the symbolic ``batch`` and shapes are batch-agnostic. Raises
    :class:`accel.ExportError` before writing anything if an op has no ONNX lowering; the
    file is written atomically.
    """
    path = Path(path)
    check_writable(path)
    graph = optimized_graph(model_or_compiled, example_inputs, pipeline)
    model = graph_to_onnx(graph, opset=opset, dynamic_batch=dynamic_batch)
    return save_model(model, path)
