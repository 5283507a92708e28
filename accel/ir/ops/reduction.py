"""Reductions and normalizations: sum/mean/max, softmax, layer/batch/group/RMS norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op

_R = OpKind.REDUCTION
_DIMS = Attr(tuple, doc="dimensions to reduce")
_KEEP = Attr(bool, False, "keep reduced dims as size 1")


def _in_numel(i, o, a) -> int:  # noqa: ANN001 - FlopsFn signature
    return i[0].numel


def _sum(x, dims, keepdim=False, dtype=None):  # noqa: ANN001, ANN202
    return torch.sum(x, dims, keepdim=keepdim, dtype=dtype)


def _mean(x, dims, keepdim=False, dtype=None):  # noqa: ANN001, ANN202
    return torch.mean(x, dims, keepdim=keepdim, dtype=dtype)


def _amax(x, dims, keepdim=False):  # noqa: ANN001, ANN202
    return torch.amax(x, dims, keepdim=keepdim)


def _amin(x, dims, keepdim=False):  # noqa: ANN001, ANN202
    return torch.amin(x, dims, keepdim=keepdim)


def _var(x, dims, correction=1, keepdim=False):  # noqa: ANN001, ANN202
    return torch.var(x, dims, correction=correction, keepdim=keepdim)


def _prod(x, dims, keepdim=False, dtype=None):  # noqa: ANN001, ANN202
    """torch.prod over several dims (torch's takes one): one dim at a time."""
    if not dims:
        y = torch.prod(x, dtype=dtype)
        return y.reshape((1,) * x.dim()) if keepdim else y
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = torch.prod(x, d, keepdim=keepdim, dtype=dtype)
        dtype = None
    return x


def _argmax(x, dim, keepdim=False):  # noqa: ANN001, ANN202
    return torch.argmax(x, dim, keepdim=keepdim)


def _argmin(x, dim, keepdim=False):  # noqa: ANN001, ANN202
    return torch.argmin(x, dim, keepdim=keepdim)


def _cumsum(x, dim):  # noqa: ANN001, ANN202
    return torch.cumsum(x, dim)


def _softmax(x, dim):  # noqa: ANN001, ANN202
    return torch.softmax(x, dim)


def _log_softmax(x, dim):  # noqa: ANN001, ANN202
    return torch.log_softmax(x, dim)


def _layer_norm(x, weight=None, bias=None, normalized_shape=(), eps=1e-5):  # noqa: ANN001, ANN202
    return F.layer_norm(x, normalized_shape, weight, bias, eps)


def _rms_norm(x, weight=None, normalized_shape=(), eps=None):  # noqa: ANN001, ANN202
    return F.rms_norm(x, normalized_shape, weight, eps)


def _group_norm(x, weight=None, bias=None, groups=1, eps=1e-5):  # noqa: ANN001, ANN202
    return F.group_norm(x, groups, weight, bias, eps)


def _batch_norm(x, mean, var, weight=None, bias=None, eps=1e-5):  # noqa: ANN001, ANN202
    return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)


_DT = Attr((torch.dtype, type(None)), None, "accumulation/output dtype")
register_op(OpDef("sum", ("x",), _sum, _R, {"dims": _DIMS, "keepdim": _KEEP, "dtype": _DT},
                  flops=_in_numel, doc="sum over dims"))
register_op(OpDef("mean", ("x",), _mean, _R, {"dims": _DIMS, "keepdim": _KEEP, "dtype": _DT},
                  flops=_in_numel, doc="mean over dims"))
register_op(OpDef("amax", ("x",), _amax, _R, {"dims": _DIMS, "keepdim": _KEEP},
                  flops=_in_numel, doc="max over dims"))
register_op(OpDef("amin", ("x",), _amin, _R, {"dims": _DIMS, "keepdim": _KEEP},
                  flops=_in_numel, doc="min over dims"))
register_op(OpDef("var", ("x",), _var, _R,
                  {"dims": _DIMS, "correction": Attr((int, float), 1), "keepdim": _KEEP},
                  flops=lambda i, o, a: 3 * i[0].numel, doc="variance over dims"))
register_op(OpDef("argmax", ("x",), _argmax, _R, {"dim": Attr(int), "keepdim": _KEEP},
                  flops=_in_numel, doc="index of the max along dim"))
register_op(OpDef("argmin", ("x",), _argmin, _R, {"dim": Attr(int), "keepdim": _KEEP},
                  flops=_in_numel, doc="index of the min along dim"))
register_op(OpDef("prod", ("x",), _prod, _R, {"dims": _DIMS, "keepdim": _KEEP, "dtype": _DT},
                  flops=_in_numel, doc="product over dims (all dims when empty)"))
register_op(OpDef("cumsum", ("x",), _cumsum, _R, {"dim": Attr(int)},
                  flops=_in_numel, doc="cumulative sum along dim"))
register_op(OpDef("softmax", ("x",), _softmax, _R, {"dim": Attr(int)},
                  flops=lambda i, o, a: 5 * i[0].numel, doc="softmax along dim"))
register_op(OpDef("log_softmax", ("x",), _log_softmax, _R, {"dim": Attr(int)},
                  flops=lambda i, o, a: 5 * i[0].numel, doc="log-softmax along dim"))
register_op(OpDef(
    "layer_norm", ("x", "weight?", "bias?"), _layer_norm, _R,
    {"normalized_shape": Attr(tuple), "eps": Attr(float, 1e-5)},
    flops=lambda i, o, a: 8 * i[0].numel, doc="layer normalization over the trailing dims",
))
register_op(OpDef(
    "rms_norm", ("x", "weight?"), _rms_norm, _R,
    {"normalized_shape": Attr(tuple), "eps": Attr((float, type(None)), None)},
    flops=lambda i, o, a: 5 * i[0].numel, doc="RMS normalization over the trailing dims",
))
register_op(OpDef(
    "group_norm", ("x", "weight?", "bias?"), _group_norm, _R,
    {"groups": Attr(int), "eps": Attr(float, 1e-5)},
    flops=lambda i, o, a: 8 * i[0].numel, doc="group normalization (channels dim 1)",
))
register_op(OpDef(
    "batch_norm", ("x", "mean", "var", "weight?", "bias?"), _batch_norm, _R,
    {"eps": Attr(float, 1e-5)},
    flops=lambda i, o, a: 2 * i[0].numel,
    doc="inference batch normalization with running statistics (channels dim 1)",
))
