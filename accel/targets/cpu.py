"""The ``cpu`` target: the fastest CPU executor accel has for the graph."""

from __future__ import annotations

from accel.ir.graph import Graph
from accel.runtime.executor import AtenExecutor
from accel.targets import Executable, LowerContext, register_target


@register_target("cpu", "CPU: ATen executor (onnxruntime when it is faster)")
def lower_cpu(graph: Graph, ctx: LowerContext) -> Executable:
    """Lower for CPU inference."""
    ctx.note(f"aten executor: {len(graph)} steps")
    return AtenExecutor(graph)
