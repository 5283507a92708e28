"""The graph verifier: checks the IR's invariants (debug mode runs it after every pass)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accel.errors import AccelValueError, GraphError
from accel.ir.ops import get_op
from accel.ir.types import TensorType

if TYPE_CHECKING:
    from accel.ir.graph import Graph


def verify(graph: Graph, *, check_types: bool = True) -> None:
    """Raise :class:`GraphError` naming the first node that breaks an invariant.

    Invariants: unique value and node names; every op registered with a valid arity and
    attributes; every input defined before use (SSA, topological order); outputs defined;
    constants typed like their tensors; and, with ``check_types``, every output type equal
    to what the op's inference gives for its inputs.
    """
    defined: set[int] = set()
    names: set[str] = set()

    def define(v, where: str) -> None:  # noqa: ANN001
        if v.name in names:
            raise GraphError(f"{where}: value name '{v.name}' is defined twice")
        names.add(v.name)
        defined.add(id(v))

    for v in graph.inputs:
        define(v, "graph input")
    for v, t in graph.constants.items():
        define(v, "constant")
        if TensorType.of(t).shape != v.type.shape or t.dtype != v.type.dtype:
            raise GraphError(f"constant %{v.name} is typed {v.type} but holds "
                             f"{TensorType.of(t)}")
    node_names: set[str] = set()
    for n in graph.nodes:
        where = f"node {n.name} ({n.op})"
        if n.name in node_names:
            raise GraphError(f"{where}: node name is used twice")
        node_names.add(n.name)
        try:
            opdef = get_op(n.op)
        except AccelValueError as e:
            raise GraphError(f"{where}: {e}") from None
        opdef.check_inputs(len(n.inputs), n.name)
        opdef.normalize_attrs(n.attrs, n.name)
        for v in n.inputs:
            if v is not None and id(v) not in defined:
                raise GraphError(f"{where}: input %{v.name} is used before it is defined")
        if check_types:
            ins = [v.type if v is not None else None for v in n.inputs]
            expected = opdef.infer_types(ins, n.attrs, graph.symbols)
            got = tuple(o.type for o in n.outputs)
            if [(t.shape, t.dtype) for t in expected] != [(t.shape, t.dtype) for t in got]:
                raise GraphError(f"{where}: outputs typed {[str(t) for t in got]} but the op "
                                 f"infers {[str(t) for t in expected]}")
        for o in n.outputs:
            define(o, where)
    for v in graph.outputs:
        if id(v) not in defined:
            raise GraphError(f"graph output %{v.name} is never defined")
