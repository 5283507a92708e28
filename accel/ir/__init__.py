"""accel's IR: typed dataflow graphs, the op registry, the verifier and the printer.

The IR imports nothing else of accel (beyond its error types).
"""

from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.ir.ops import Attr, OpDef, OpKind, all_ops, get_op, register_op
from accel.ir.types import TensorType

__all__ = [
    "Attr", "Graph", "Node", "OpDef", "OpKind", "Rewriter", "TensorType", "Value",
    "all_ops", "get_op", "register_op",
]
