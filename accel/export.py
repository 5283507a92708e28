"""``accel.export_onnx``: the optimized graph as a standard-op ONNX file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accel.backends.onnx.exporter import DEFAULT_OPSET, check_writable, graph_to_onnx, save_model
from accel.ir.graph import Graph
from accel.runtime import AutoDynamic, CompiledModel


def optimized_graph(model_or_compiled: Any, example_inputs: Any, pipeline: str = "default",
                    dynamic_shapes: Any = None, dynamic_batch: bool = False) -> Graph:
    """The graph to export: a graph as is, a compiled model's, or ``model`` captured and
    optimized. ``dynamic_shapes`` (or ``dynamic_batch``: dim 0 of every input) makes dims
    symbolic; a compiled model whose graph is static in them compiles once more."""
    if isinstance(model_or_compiled, Graph):
        return model_or_compiled
    if isinstance(model_or_compiled, CompiledModel):
        graph = model_or_compiled.graph
        if dynamic_batch and dynamic_shapes is None and all(
                v.type.rank == 0 or isinstance(v.type.shape[0], int) for v in graph.inputs):
            graph = model_or_compiled.specialize(AutoDynamic(
                {i: frozenset({0}) for i, v in enumerate(graph.inputs) if v.type.rank})).graph
        elif graph.constants_released:  # an executor owns the weights: compile a copy
            graph = model_or_compiled.specialize().graph
        return graph
    import accel

    if dynamic_shapes is None and dynamic_batch:
        from accel.frontend.dynamic import batch_spec

        dynamic_shapes = batch_spec(accel.frontend.check_example_inputs(example_inputs))
    from accel.api import _compile

    return _compile(model_or_compiled, example_inputs, pipeline, "reference",
                    calibration=None, options=None, debug=None, dump=None, name=None,
                    dynamic_shapes=dynamic_shapes, serve_example=False).graph


def export_onnx(
    model_or_compiled: Any,
    example_inputs: Any,
    path: str | os.PathLike,
    pipeline: str = "default",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamic_shapes: Any = None,
) -> Path:
    """Export the optimized graph of a model (or a ``CompiledModel``) to ONNX at ``path``.

    Standard ONNX ops only (default domain), ``opset`` 18 by default (17 or newer; at 17
    no max/min scatter reductions and no ``aten`` fallbacks through torch.onnx), weights as
    initializers (external data next to the file beyond 2 GB). The graph's symbolic dims are
    the model's named dynamic axes: ``dynamic_shapes`` as ``accel.compile`` takes it (``"auto"``, or
    torch.export's per-input ``{axis: Dim}``), else with ``dynamic_batch`` dim 0 of every
    input (``batch``) where the model allows it. Raises :class:`accel.ExportError` before
    writing anything if an op has no ONNX lowering; the file is written atomically.
    """
    path = Path(path)
    check_writable(path)
    graph = optimized_graph(model_or_compiled, example_inputs, pipeline, dynamic_shapes,
                            dynamic_batch)
    model = graph_to_onnx(graph, opset=opset)
    return save_model(model, path)
