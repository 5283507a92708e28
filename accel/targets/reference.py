"""The ``reference`` target: every node runs its ATen reference implementation."""

from __future__ import annotations

from accel.backends.aten import AtenExecutor
from accel.ir.graph import Graph
from accel.runtime import Executable
from accel.targets import LowerContext, register_target


@register_target("reference", "ATen reference executor, every op as its torch function")
def lower_reference(graph: Graph, ctx: LowerContext) -> Executable:
    """Run the graph op by op with ATen."""
    ctx.note(f"aten executor: {len(graph)} steps")
    return AtenExecutor(graph)
