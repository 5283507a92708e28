"""Data-movement ops: reshape, permute, expand, slice, concat, pad, index_select."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op
from accel.ir.types import TensorType

_S = OpKind.SHAPE


def _zero(i, o, a) -> int:  # noqa: ANN001
    return 0


def _reshape(x, shape):  # noqa: ANN001, ANN202
    return x.reshape(shape)


def _permute(x, dims):  # noqa: ANN001, ANN202
    return x.permute(dims)


def _expand(x, shape):  # noqa: ANN001, ANN202
    return x.expand(shape)


def _slice(x, dim, start, end, step=1):  # noqa: ANN001, ANN202
    return x[(slice(None),) * (dim % x.dim()) + (slice(start, end, step),)]


def _select(x, dim, index):  # noqa: ANN001, ANN202
    return x.select(dim, index)


def _concat(*xs, dim):  # noqa: ANN001, ANN202
    return torch.cat(xs, dim)


def _pad(x, pads, value=0.0):  # noqa: ANN001, ANN202
    return F.pad(x, pads, "constant", value)


def _index_select(x, index, dim):  # noqa: ANN001, ANN202
    return torch.index_select(x, dim, index)


def _gather(x, index, dim):  # noqa: ANN001, ANN202
    return torch.gather(x, dim, index)


def _scatter(x, index, src, dim, reduce="none"):  # noqa: ANN001, ANN202
    if reduce == "none":
        return torch.scatter(x, dim, index, src)
    return torch.scatter_reduce(x, dim, index, src, reduce, include_self=True)


def _index_put(x, values, *indices, accumulate=False):  # noqa: ANN001, ANN202
    return torch.index_put(x, indices, values, accumulate)


def _size_tensor(*, value, dtype, device):  # noqa: ANN001, ANN202
    return torch.tensor(value, dtype=dtype, device=device)


register_op(OpDef(
    "size_tensor", (), _size_tensor, _S,
    {"value": Attr(int), "dtype": Attr(torch.dtype, torch.int64), "device": Attr(str, "cpu")},
    infer=lambda ins, a: (TensorType((), a["dtype"], a["device"]),), flops=_zero,
    doc="a 0-d tensor holding a symbolic size (a size used as a tensor operand)",
))


def _arange(*, start, end, step, dtype, device):  # noqa: ANN001, ANN202
    return torch.arange(start, end, step, dtype=dtype, device=device)


register_op(OpDef(
    "arange", (), _arange, _S,
    {"start": Attr(int, 0), "end": Attr(int), "step": Attr(int, 1),
     "dtype": Attr(torch.dtype, torch.int64), "device": Attr(str, "cpu")},
    flops=_zero, doc="torch.arange(start, end, step) with symbolic bounds (static ones fold "
                     "into constants at capture)",
))
register_op(OpDef("reshape", ("x",), _reshape, _S, {"shape": Attr(tuple)}, flops=_zero,
                  doc="view with a new shape (same element order)"))
register_op(OpDef("permute", ("x",), _permute, _S, {"dims": Attr(tuple)}, flops=_zero,
                  doc="reorder dimensions"))
register_op(OpDef("expand", ("x",), _expand, _S, {"shape": Attr(tuple)}, flops=_zero,
                  doc="broadcast to a larger shape"))
register_op(OpDef(
    "slice", ("x",), _slice, _S,
    {"dim": Attr(int), "start": Attr(int), "end": Attr(int), "step": Attr(int, 1)},
    flops=_zero, doc="x[..., start:end:step, ...] along dim",
))
register_op(OpDef("select", ("x",), _select, _S, {"dim": Attr(int), "index": Attr(int)},
                  flops=_zero, doc="x[..., index, ...] along dim (drops the dim)"))
register_op(OpDef("concat", ("xs*",), _concat, _S, {"dim": Attr(int)}, flops=_zero,
                  doc="concatenate along dim"))
def _pad_type(ins, attrs):  # noqa: ANN001, ANN202
    """Each padded dim grows by its two pads (F.pad order: last dim first)."""
    x, pads = ins[0], attrs["pads"]
    shape = list(x.shape)
    for i in range(len(pads) // 2):
        d = len(shape) - 1 - i
        shape[d] = shape[d] + pads[2 * i] + pads[2 * i + 1]
    return (x.with_shape(tuple(shape)),)


register_op(OpDef("pad", ("x",), _pad, _S,
                  {"pads": Attr(tuple, doc="F.pad order: last dim first"),
                   "value": Attr((float, int), 0.0)},
                  infer=_pad_type, flops=_zero, doc="constant padding"))
register_op(OpDef("index_select", ("x", "index"), _index_select, OpKind.GATHER,
                  {"dim": Attr(int)}, flops=_zero, doc="entries of x at index along dim"))
register_op(OpDef("gather", ("x", "index"), _gather, OpKind.GATHER,
                  {"dim": Attr(int)}, flops=_zero, doc="torch.gather along dim"))
register_op(OpDef("scatter", ("x", "index", "src"), _scatter, OpKind.GATHER,
                  {"dim": Attr(int), "reduce": Attr(str, "none", "'none' (src replaces x), "
                                                    "'sum', 'prod', 'amax' or 'amin' (with x)")},
                  flops=_zero, doc="x with src written (or reduced) at index along dim, as "
                                   "torch.scatter / scatter_reduce(include_self=True); src has "
                                   "index's shape"))
register_op(OpDef("index_put", ("x", "values", "indices*"), _index_put, OpKind.GATHER,
                  {"accumulate": Attr(bool, False)}, flops=_zero,
                  doc="x with values written (or added) at x[indices], the indices being integer "
                      "tensors for x's leading dims (torch.index_put)"))
