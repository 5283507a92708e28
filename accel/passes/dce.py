"""Dead-code elimination: drop nodes and constants no output depends on."""

from __future__ import annotations

from accel.ir.graph import Graph
from accel.passes.registry import PassContext, register_pass


@register_pass("dce")
def dce(graph: Graph, ctx: PassContext) -> Graph:
    """Remove nodes whose results no graph output depends on, and unused constants."""
    new = graph.rewriter().finish()
    removed = len(graph) - len(new)
    dropped = len(graph.constants) - len(new.constants)
    if removed == 0 and dropped == 0:
        return graph
    ctx.note(f"removed {removed} dead node(s), {dropped} unused constant(s)")
    return new
