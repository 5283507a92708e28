"""Pointwise ops: unary, binary (with broadcasting), ternary, casts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op

_P = OpKind.POINTWISE

_UNARY = {
    "neg": (torch.neg, "-x"),
    "exp": (torch.exp, "e^x"),
    "log": (torch.log, "natural logarithm"),
    "sqrt": (torch.sqrt, "square root"),
    "rsqrt": (torch.rsqrt, "1/sqrt(x)"),
    "abs": (torch.abs, "|x|"),
    "reciprocal": (torch.reciprocal, "1/x"),
    "sin": (torch.sin, "sine"),
    "cos": (torch.cos, "cosine"),
    "tanh": (torch.tanh, "hyperbolic tangent"),
    "erf": (torch.erf, "error function"),
    "sigmoid": (torch.sigmoid, "logistic sigmoid"),
    "relu": (torch.relu, "max(x, 0)"),
    "silu": (F.silu, "x * sigmoid(x)"),
    "hardswish": (F.hardswish, "x * relu6(x + 3) / 6"),
    "hardsigmoid": (F.hardsigmoid, "relu6(x + 3) / 6"),
    "logical_not": (torch.logical_not, "boolean not"),
    "floor": (torch.floor, "round down"),
    "ceil": (torch.ceil, "round up"),
    "trunc": (torch.trunc, "round toward zero"),
    "round": (torch.round, "round half to even"),
    "sign": (torch.sign, "-1, 0 or 1 (0 for NaN)"),
    "signbit": (torch.signbit, "whether the sign bit is set (true for -0.0)"),
    "isnan": (torch.isnan, "whether x is NaN"),
    "isinf": (torch.isinf, "whether x is +-inf"),
    "expm1": (torch.expm1, "e^x - 1"),
    "exp2": (torch.exp2, "2^x"),
    "log1p": (torch.log1p, "log(1 + x)"),
    "log2": (torch.log2, "base-2 logarithm"),
    "log10": (torch.log10, "base-10 logarithm"),
    "tan": (torch.tan, "tangent"),
    "asin": (torch.asin, "inverse sine"),
    "acos": (torch.acos, "inverse cosine"),
    "atan": (torch.atan, "inverse tangent"),
    "sinh": (torch.sinh, "hyperbolic sine"),
    "cosh": (torch.cosh, "hyperbolic cosine"),
    "asinh": (torch.asinh, "inverse hyperbolic sine"),
    "acosh": (torch.acosh, "inverse hyperbolic cosine"),
    "atanh": (torch.atanh, "inverse hyperbolic tangent"),
    "erfc": (torch.erfc, "1 - erf(x)"),
}

_BINARY = {
    "add": (torch.add, "a + b"),
    "sub": (torch.sub, "a - b"),
    "mul": (torch.mul, "a * b"),
    "pow": (torch.pow, "a ** b"),
    "maximum": (torch.maximum, "elementwise max"),
    "minimum": (torch.minimum, "elementwise min"),
    "eq": (torch.eq, "a == b"),
    "ne": (torch.ne, "a != b"),
    "lt": (torch.lt, "a < b"),
    "le": (torch.le, "a <= b"),
    "gt": (torch.gt, "a > b"),
    "ge": (torch.ge, "a >= b"),
    "logical_and": (torch.logical_and, "boolean and"),
    "logical_or": (torch.logical_or, "boolean or"),
    "remainder": (torch.remainder, "a mod b with the sign of b (Python's %)"),
    "fmod": (torch.fmod, "a mod b with the sign of a (C's fmod)"),
    "atan2": (torch.atan2, "angle of the point (b, a)"),
    "hypot": (torch.hypot, "sqrt(a^2 + b^2)"),
    "fmax": (torch.fmax, "elementwise max ignoring NaN"),
    "fmin": (torch.fmin, "elementwise min ignoring NaN"),
}

UNARY_OPS = frozenset(_UNARY) | {"gelu", "clamp", "leaky_relu", "cast"}
BINARY_OPS = frozenset(_BINARY) | {"div"}

for _name, (_fn, _doc) in _UNARY.items():
    register_op(OpDef(_name, ("x",), _fn, _P, doc=_doc))
for _name, (_fn, _doc) in _BINARY.items():
    register_op(OpDef(_name, ("a", "b"), _fn, _P, doc=_doc))


def _div(a: torch.Tensor, b: torch.Tensor, rounding_mode: str | None = None) -> torch.Tensor:
    return torch.div(a, b, rounding_mode=rounding_mode)


def _gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return F.gelu(x, approximate=approximate)


def _clamp(x: torch.Tensor, min: float | None = None, max: float | None = None) -> torch.Tensor:  # noqa: A002
    return torch.clamp(x, min, max)


def _leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope)


def _cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype)


def _where(cond: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(cond, a, b)


register_op(OpDef(
    "div", ("a", "b"), _div, _P,
    attrs={"rounding_mode": Attr((str, type(None)), None, "None, 'trunc' or 'floor'")},
    doc="a / b",
))
register_op(OpDef(
    "gelu", ("x",), _gelu, _P,
    attrs={"approximate": Attr(str, "none", "'none' (erf) or 'tanh'")},
    doc="Gaussian error linear unit",
))
register_op(OpDef(
    "clamp", ("x",), _clamp, _P,
    attrs={
        "min": Attr((float, int, type(None)), None),
        "max": Attr((float, int, type(None)), None),
    },
    doc="clamp to [min, max]",
))
register_op(OpDef(
    "leaky_relu", ("x",), _leaky_relu, _P,
    attrs={"negative_slope": Attr(float, 0.01)},
    doc="x if x > 0 else slope * x",
))
register_op(OpDef(
    "cast", ("x",), _cast, _P,
    attrs={"dtype": Attr(torch.dtype, doc="target dtype")},
    flops=lambda i, o, a: 0,
    doc="convert to another dtype",
    aliases=True,  # x.to(x.dtype) is x
))
register_op(OpDef("where", ("cond", "a", "b"), _where, _P, doc="cond ? a : b"))
