"""The ``aten`` fallback op: an ATen operator with no IR lowering, run as is.

Its attributes hold the operator and the call's argument structure, with
:class:`TensorArg` placeholders where the node's tensor inputs go. Every fallback is
listed in the compile report; it is never a silent crash nor a silent success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op


@dataclass(frozen=True)
class TensorArg:
    """Placeholder for the node's ``index``-th tensor input inside an argument template."""

    index: int

    def __repr__(self) -> str:
        return f"${self.index}"


def _to_call_args(template: Any, tensors: tuple) -> Any:
    # Templates are frozen to tuples; ATen schemas accept tuples wherever lists go.
    if isinstance(template, TensorArg):
        return tensors[template.index]
    if isinstance(template, tuple):
        return [_to_call_args(t, tensors) for t in template]
    return template


def _aten(*tensors, target, args=(), kwargs=()):  # noqa: ANN001, ANN202
    call_args = [_to_call_args(a, tensors) for a in args]
    call_kwargs = {k: _to_call_args(v, tensors) for k, v in kwargs}
    out = target(*call_args, **call_kwargs)
    if isinstance(out, list | tuple) and len(out) == 1:  # a Tensor[] of one (meshgrid of one
        return out[0]  # tensor, gradient of a 1-D input): the node's one output is the tensor
    return out


register_op(OpDef(
    "aten", ("inputs*",), _aten, OpKind.FALLBACK,
    {"target": Attr(object, doc="the torch.ops.aten OpOverload"),
     "args": Attr(tuple, (), "positional argument template"),
     "kwargs": Attr(tuple, (), "keyword arguments as (name, template) pairs")},
    doc="an ATen op without an IR lowering, run by the reference executor",
))
