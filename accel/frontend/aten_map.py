"""Normalisation of ATen ops into the core IR op set.

Each handler receives an :class:`ImportContext` and the call's arguments (fx nodes already
replaced by IR values) and returns the IR value(s) of the result. An ATen op without a
handler becomes an ``aten`` fallback node (listed in the report), never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from accel.ir.graph import Rewriter, Value
from accel.ir.shapes import is_symbolic

aten = torch.ops.aten
Handler = Callable[..., Any]
HANDLERS: dict[Any, Handler] = {}
"""Handlers by ``OpOverloadPacket`` (every overload) or ``OpOverload`` (just that one)."""


class Unsupported(Exception):
    """Raised by a handler when this particular call cannot be normalised (-> fallback)."""


class ImportContext:
    """What handlers use to build IR: the rewriter plus scalar-to-constant conversion."""

    def __init__(self, rw: Rewriter) -> None:
        self.rw = rw
        self.out_shapes: tuple[tuple[Any, ...], ...] | None = None
        """The output shapes torch traced for the call being imported (symbolic dims as
        accel expressions), when it traced with symbolic sizes."""
        self.traced: Any = None
        """What torch traced for the call being imported (FakeTensors, ``meta["val"]``)."""
        self.rename: dict[Any, Any] = {}
        """torch's size symbols -> accel's (shared with the importer): a handler that makes
        a size depending on the data binds torch's unbacked symbol for it here."""

    def count_symbol(self, counted: Value, traced: Any = None) -> str:
        """A new counted size symbol (``nnz``, ``nnz_1``...): the number of nonzero entries
        of ``counted``, in ``[0, numel]``, defined by the ``nonzero`` node the caller makes
        with ``count=`` this name. ``traced`` (the SymInt torch traced for that size) is
        bound to it, so later sizes torch derives from it are accel's."""
        from accel.ir.shapes import at_hints, symbol, upper_bound

        symbols = self.rw.meta.get("symbols", {})
        name, k = "nnz", 1
        while name in symbols:
            name, k = f"nnz_{k}", k + 1
        n = counted.type.numel
        hi = n if isinstance(n, int) else upper_bound(n, symbols)
        hint = int(at_hints(n, symbols))
        # a range of at least [0, 2]: shape inference traces sizes >= 2
        self.rw.add_counted_symbol(name, counted, hint=hint, hi=None if hi is None else
                                   max(hi, 2), lo=0)
        if isinstance(traced, torch.SymInt):
            import sympy

            expr = traced.node.expr
            if isinstance(expr, sympy.Symbol):
                self.rename[expr] = symbol(name)
        return name

    def out_shape(self) -> tuple[Any, ...] | None:
        """The first output's traced shape, for graphs traced with symbolic sizes."""
        return self.out_shapes[0] if self.out_shapes else None

    def filled(self, shape: tuple[Any, ...], value: Any, dtype: torch.dtype) -> Value:
        """A tensor of ``shape`` filled with ``value``: a constant for a static shape, a
        0-d constant expanded to a symbolic one."""
        if not is_symbolic(shape):
            return self.rw.const(torch.full(tuple(shape), value, dtype=dtype), "full")
        return self.op("expand", self.rw.const(torch.tensor(value, dtype=dtype), "fill"),
                       shape=tuple(shape))

    def op(self, op: str, *inputs: Value | None, **attrs: Any) -> Value:
        """Add an IR node; returns its output."""
        return self.rw.op(op, *inputs, **attrs)

    def is_const(self, v: Any) -> bool:
        """Whether ``v`` is a constant value."""
        return isinstance(v, Value) and v in self.rw.constants

    def tensor(self, x: Any, like: Value | None = None) -> Value:
        """``x`` as an IR value; Python scalars become 0-d constants that do not promote."""
        if isinstance(x, Value):
            return x
        if is_symbolic(x):  # a size used as an operand (index arithmetic, scaling)
            dtype = like.dtype if like is not None else torch.int64
            return self.op("size_tensor", value=x, dtype=dtype,
                           device=like.type.device if like is not None else "cpu")
        if not isinstance(x, bool | int | float):
            raise Unsupported(f"argument {x!r} is not a tensor or scalar")
        dtype = _scalar_dtype(x, like.dtype if like is not None else None)
        return self.rw.const(torch.tensor(x, dtype=dtype), "scalar")


def _scalar_dtype(x: bool | int | float, tensor_dtype: torch.dtype | None) -> torch.dtype:
    if tensor_dtype is None:
        return torch.tensor(x).dtype
    if isinstance(x, bool):
        return tensor_dtype
    if isinstance(x, float) and not (tensor_dtype.is_floating_point or tensor_dtype.is_complex):
        return torch.get_default_dtype()
    return tensor_dtype


def handles(*targets: Any) -> Callable[[Handler], Handler]:
    """Register a handler for the given ATen packets or overloads."""

    def deco(fn: Handler) -> Handler:
        for t in targets:
            HANDLERS[t] = fn
        return fn

    return deco


def lookup(target: Any) -> Handler | None:
    """The handler for an ATen overload, if any."""
    if target in HANDLERS:
        return HANDLERS[target]
    packet = getattr(target, "overloadpacket", None)
    return HANDLERS.get(packet)


# ---- pointwise ------------------------------------------------------------------------------
def _binary(op: str) -> Handler:
    def handler(c: ImportContext, a: Any, b: Any, **_: Any) -> Value:
        like = a if isinstance(a, Value) else b if isinstance(b, Value) else None
        return c.op(op, c.tensor(a, like), c.tensor(b, like))
    return handler


handles(aten.min.other)(_binary("minimum"))
handles(aten.max.other)(_binary("maximum"))


def _logical(op: str) -> Handler:
    """A bitwise op on booleans as its logical op (integer bit twiddling falls back)."""
    def handler(c: ImportContext, a: Any, b: Any) -> Value:
        like = a if isinstance(a, Value) else b
        av, bv = c.tensor(a, like), c.tensor(b, like)
        if av.dtype != torch.bool or bv.dtype != torch.bool:
            raise Unsupported(f"bitwise {op} on integers")
        return c.op(op, av, bv)
    return handler


handles(aten.bitwise_and, aten.__and__)(_logical("logical_and"))
handles(aten.bitwise_or, aten.__or__)(_logical("logical_or"))
handles(aten.bitwise_xor, aten.__xor__)(_logical("ne"))


@handles(aten.logical_xor)
def _logical_xor(c: ImportContext, a: Any, b: Any) -> Value:
    """(a != 0) != (b != 0)."""
    like = a if isinstance(a, Value) else b
    av, bv = c.tensor(a, like), c.tensor(b, like)
    av, bv = (v if v.dtype == torch.bool else c.op("ne", v, c.tensor(0, v)) for v in (av, bv))
    return c.op("ne", av, bv)


def _add_like(op: str) -> Handler:
    def handler(c: ImportContext, a: Any, b: Any, alpha: Any = 1) -> Value:
        like = a if isinstance(a, Value) else b
        bv = c.tensor(b, like)
        if alpha != 1:
            bv = c.op("mul", bv, c.tensor(alpha, bv))
        return c.op(op, c.tensor(a, like), bv)
    return handler


handles(aten.add)(_add_like("add"))
handles(aten.sub)(_add_like("sub"))


@handles(aten.rsub)
def _rsub(c: ImportContext, a: Any, b: Any, alpha: Any = 1) -> Value:
    return _add_like("sub")(c, b, a, alpha)


@handles(aten.div)
def _div(c: ImportContext, a: Any, b: Any, rounding_mode: str | None = None) -> Value:
    like = a if isinstance(a, Value) else b
    return c.op("div", c.tensor(a, like), c.tensor(b, like), rounding_mode=rounding_mode)


def _unary(op: str) -> Handler:
    def handler(c: ImportContext, x: Value) -> Value:
        return c.op(op, x)
    return handler


UNARY_SAME_NAME = ("neg", "exp", "log", "sqrt", "rsqrt", "abs", "reciprocal", "sin", "cos",
                   "tanh", "erf", "sigmoid", "relu", "silu", "hardswish", "hardsigmoid",
                   "logical_not", "floor", "ceil", "trunc", "sign", "signbit", "isnan", "isinf",
                   "expm1", "exp2", "log1p", "log2", "log10", "tan", "asin", "acos", "atan",
                   "sinh", "cosh", "asinh", "acosh", "atanh", "erfc")
"""ATen (and prims) unary ops with an IR op of the same name and semantics."""
BINARY_SAME_NAME = ("mul", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
                    "logical_and", "logical_or", "remainder", "fmod", "atan2", "hypot", "fmax",
                    "fmin")
"""ATen (and prims) binary ops with an IR op of the same name and semantics."""

for _name in UNARY_SAME_NAME:
    handles(getattr(aten, _name))(_unary(_name))
    if hasattr(torch.ops.prims, _name):  # what torch's decompositions lower to
        handles(getattr(torch.ops.prims, _name).default)(_unary(_name))
for _name, _ir in {"special_expm1": "expm1", "special_log1p": "log1p",
                   "special_exp2": "exp2", "special_erfc": "erfc", "arcsin": "asin",
                   "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
                   "arctanh": "atanh", "fix": "trunc"}.items():
    if hasattr(aten, _name):  # aliases torch may decompose to their main op anyway
        handles(getattr(aten, _name))(_unary(_ir))


for _name in BINARY_SAME_NAME:
    handles(getattr(aten, _name))(_binary(_name))
    if hasattr(torch.ops.prims, _name):
        handles(getattr(torch.ops.prims, _name).default)(_binary(_name))
for _name in ("add", "sub"):
    handles(getattr(torch.ops.prims, _name).default)(_binary(_name))
handles(aten.multiply)(_binary("mul"))
handles(aten.subtract)(_add_like("sub"))
handles(aten.true_divide, aten.divide.Tensor, aten.divide.Scalar)(_binary("div"))


@handles(aten.divide.Tensor_mode, aten.divide.Scalar_mode)
def _divide_mode(c: ImportContext, a: Any, b: Any, *, rounding_mode: str | None = None) -> Value:
    return _div(c, a, b, rounding_mode=rounding_mode)


@handles(torch.ops.prims.div.default)
def _prims_div(c: ImportContext, a: Any, b: Any) -> Value:
    """prims.div: true division of floats, truncating division of integers."""
    like = a if isinstance(a, Value) else b
    av, bv = c.tensor(a, like), c.tensor(b, like)
    integer = not (av.dtype.is_floating_point or av.dtype.is_complex)
    return c.op("div", av, bv, rounding_mode="trunc" if integer else None)


@handles(torch.ops.prims.where.default)
def _prims_where(c: ImportContext, cond: Value, a: Any, b: Any) -> Value:
    like = a if isinstance(a, Value) else b if isinstance(b, Value) else None
    return c.op("where", cond, c.tensor(a, like), c.tensor(b, like))


@handles(aten.sgn)
def _sgn(c: ImportContext, x: Value) -> Value:
    if x.dtype.is_complex:
        raise Unsupported("sgn of a complex tensor")
    return c.op("sign", x)


@handles(aten.round.default, torch.ops.prims.round.default)
def _round(c: ImportContext, x: Value) -> Value:
    return c.op("round", x)


@handles(aten.round.decimals)
def _round_decimals(c: ImportContext, x: Value, *, decimals: int = 0) -> Value:
    """round(x * 10^d) / 10^d, as ATen computes it."""
    if decimals == 0:
        return c.op("round", x)
    if not x.dtype.is_floating_point:
        raise Unsupported("round with decimals of an integer tensor")
    k = c.tensor(10.0 ** abs(decimals), x)
    if decimals > 0:
        return c.op("div", c.op("round", c.op("mul", x, k)), k)
    return c.op("mul", c.op("round", c.op("div", x, k)), k)


@handles(aten.square)
def _square(c: ImportContext, x: Value) -> Value:
    if x.dtype == torch.bool:
        raise Unsupported("square of a bool tensor (promotes to int64)")
    return c.op("mul", x, x)


@handles(aten.isfinite, torch.ops.prims.isfinite.default)
def _isfinite(c: ImportContext, x: Value) -> Value:
    """Neither NaN nor +-inf (every integer is finite)."""
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        return c.op("eq", x, x)
    return c.op("logical_not", c.op("logical_or", c.op("isnan", x), c.op("isinf", x)))


@handles(aten.log_sigmoid)
def _log_sigmoid(c: ImportContext, x: Value) -> Value:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for either sign."""
    return c.op("sub", c.op("minimum", x, c.tensor(0.0, x)),
                c.op("log1p", c.op("exp", c.op("neg", c.op("abs", x)))))


@handles(aten.bitwise_not)
def _bitwise_not(c: ImportContext, x: Value) -> Value:
    if x.dtype != torch.bool:
        raise Unsupported("bitwise_not on integers")
    return c.op("logical_not", x)


@handles(aten.gelu)
def _gelu(c: ImportContext, x: Value, approximate: str = "none") -> Value:
    return c.op("gelu", x, approximate=approximate)


@handles(aten.clamp, aten.clip)
def _clamp(c: ImportContext, x: Value, min: Any = None, max: Any = None, **_: Any) -> Value:  # noqa: A002
    if isinstance(min, Value) or isinstance(max, Value):  # max(min(x, lo), hi) as torch
        y = x if min is None else c.op("maximum", x, c.tensor(min, x))
        return y if max is None else c.op("minimum", y, c.tensor(max, x))
    return c.op("clamp", x, min=min, max=max)


@handles(aten.hardtanh)
def _hardtanh(c: ImportContext, x: Value, min_val: Any = -1.0, max_val: Any = 1.0) -> Value:
    return _clamp(c, x, min_val, max_val)


@handles(aten.clamp_min)
def _clamp_min(c: ImportContext, x: Value, min: Any) -> Value:  # noqa: A002
    if isinstance(min, Value):
        return c.op("maximum", x, min)
    return c.op("clamp", x, min=min)


@handles(aten.clamp_max)
def _clamp_max(c: ImportContext, x: Value, max: Any) -> Value:  # noqa: A002
    if isinstance(max, Value):
        return c.op("minimum", x, max)
    return c.op("clamp", x, max=max)


@handles(aten.relu6)
def _relu6(c: ImportContext, x: Value) -> Value:
    return c.op("clamp", x, min=0.0, max=6.0)


@handles(aten.leaky_relu)
def _leaky_relu(c: ImportContext, x: Value, negative_slope: float = 0.01) -> Value:
    return c.op("leaky_relu", x, negative_slope=float(negative_slope))


@handles(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def _where(c: ImportContext, cond: Value, a: Any, b: Any) -> Value:
    like = a if isinstance(a, Value) else b if isinstance(b, Value) else None
    return c.op("where", cond, c.tensor(a, like), c.tensor(b, like))


@handles(aten.masked_fill)
def _masked_fill(c: ImportContext, x: Value, mask: Value, value: Any) -> Value:
    return c.op("where", mask, c.tensor(value, x), x)


@handles(aten._to_copy, aten.to.dtype, aten.to.dtype_layout, aten.to.other, aten.to.device)
def _to(c: ImportContext, x: Value, *args: Any, **kw: Any) -> Value:
    dtype, device = kw.get("dtype"), kw.get("device")
    for a in args:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, Value):
            dtype = a.dtype
        elif isinstance(a, torch.device | str):
            device = a
    if device is not None and torch.device(device).type != x.type.device:
        raise Unsupported("device transfer")
    return x if dtype is None or dtype == x.dtype else c.op("cast", x, dtype=dtype)


@handles(aten.type_as)
def _type_as(c: ImportContext, x: Value, other: Value) -> Value:
    return x if x.dtype == other.dtype else c.op("cast", x, dtype=other.dtype)


@handles(aten.clone, aten.contiguous, aten.alias, aten.detach, aten.lift_fresh_copy,
         aten.lift_fresh)
def _identity(c: ImportContext, x: Value, *_: Any, **__: Any) -> Value:
    return x


@handles(aten.dropout, aten.feature_dropout, aten.alpha_dropout)
def _dropout(c: ImportContext, x: Value, p: float = 0.5, train: bool | None = False) -> Value:
    if train and p > 0:
        raise Unsupported("dropout in training mode (call model.eval())")
    return x


# ---- reductions and norms -------------------------------------------------------------------
def _dims(x: Value, dim: Any) -> tuple[int, ...]:
    if dim is None or dim == [] or dim == ():
        return tuple(range(x.type.rank))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % max(x.type.rank, 1) for d in dims)


def _reduce(op: str) -> Handler:
    def handler(c: ImportContext, x: Value, dim: Any = None, keepdim: bool = False,
                dtype: torch.dtype | None = None) -> Value:
        extra = {"dtype": dtype} if op in ("sum", "mean") else {}
        if dtype is not None and op not in ("sum", "mean"):
            raise Unsupported("dtype argument")
        return c.op(op, x, dims=_dims(x, dim), keepdim=bool(keepdim), **extra)
    return handler


for _name in ("sum", "mean", "amax", "amin"):
    handles(getattr(aten, _name))(_reduce(_name))


@handles(aten.var.correction, aten.var.dim)
def _var(c: ImportContext, x: Value, dim: Any = None, unbiased: Any = None, keepdim: bool = False,
         *, correction: Any = None) -> Value:
    if correction is None:
        correction = 1 if unbiased in (None, True) else 0
    return c.op("var", x, dims=_dims(x, dim), correction=correction, keepdim=keepdim)


def _arg_reduce(op: str) -> Handler:
    def handler(c: ImportContext, x: Value, dim: int | None = None,
                keepdim: bool = False) -> Value:
        if dim is not None and x.type.rank > 0:
            return c.op(op, x, dim=dim % x.type.rank, keepdim=keepdim)
        if not x.type.is_static:
            raise Unsupported(f"{op} over every element of a symbolic tensor")
        flat = x if x.shape == (x.type.numel,) else c.op("reshape", x, shape=(x.type.numel,))
        i = c.op(op, flat, dim=0)
        return c.op("reshape", i, shape=(1,) * x.type.rank) if keepdim and x.type.rank else i
    return handler


handles(aten.argmax)(_arg_reduce("argmax"))
handles(aten.argmin)(_arg_reduce("argmin"))


def _max_min(values: str, index: str) -> Handler:
    """``max``/``min``: over every element (one output), or along ``dim`` (values, indices)."""
    def handler(c: ImportContext, x: Value, dim: Any = None, keepdim: bool = False) -> Any:
        if dim is None:
            return c.op(values, x, dims=_dims(x, None))
        if isinstance(dim, Value):
            raise Unsupported(f"{values} against a tensor")  # aten.max.other has its handler
        d = dim % max(x.type.rank, 1)
        if x.type.rank == 0:
            return x, c.filled((), 0, torch.int64)
        return (c.op(values, x, dims=(d,), keepdim=bool(keepdim)),
                c.op(index, x, dim=d, keepdim=bool(keepdim)))
    return handler


handles(aten.max.default, aten.max.dim)(_max_min("amax", "argmax"))
handles(aten.min.default, aten.min.dim)(_max_min("amin", "argmin"))


def _prims_reduce(op: str) -> Handler:
    def handler(c: ImportContext, x: Value, dims: Any = None, *,
                output_dtype: torch.dtype | None = None) -> Value:
        extra = {"dtype": output_dtype} if op in ("sum", "prod") else {}
        if output_dtype is not None and op not in ("sum", "prod"):
            raise Unsupported("output_dtype argument")
        return c.op(op, x, dims=_dims(x, dims), **extra)
    return handler


for _name in ("sum", "prod", "amax", "amin"):
    handles(getattr(torch.ops.prims, _name).default)(_prims_reduce(_name))


@handles(torch.ops.prims.var.default)
def _prims_var(c: ImportContext, x: Value, dims: Any = None, correction: Any = 1.0, *,
               output_dtype: Any = None) -> Value:
    if output_dtype is not None and output_dtype != x.dtype:
        raise Unsupported("output_dtype argument")
    corr = 1 if correction is None else correction
    corr = int(corr) if float(corr).is_integer() else float(corr)
    return c.op("var", x, dims=_dims(x, dims), correction=corr, keepdim=False)


@handles(aten.prod)
def _prod(c: ImportContext, x: Value, dim: Any = None, keepdim: bool = False, *,
          dtype: torch.dtype | None = None) -> Value:
    if isinstance(dim, torch.dtype):  # prod(x, dtype) positionally
        dim, dtype = None, dim
    return c.op("prod", x, dims=_dims(x, dim), keepdim=bool(keepdim), dtype=dtype)


@handles(aten.cumsum)
def _cumsum(c: ImportContext, x: Value, dim: int, dtype: torch.dtype | None = None) -> Value:
    if dtype is not None and dtype != x.dtype:
        x = c.op("cast", x, dtype=dtype)
    return c.op("cumsum", x, dim=dim % x.type.rank)


def _softmax_like(op: str) -> Handler:
    def handler(c: ImportContext, x: Value, dim: int, dtype_or_half: Any = None) -> Value:
        if isinstance(dtype_or_half, torch.dtype) and dtype_or_half != x.dtype:
            x = c.op("cast", x, dtype=dtype_or_half)
        return c.op(op, x, dim=dim % x.type.rank)
    return handler


handles(aten.softmax, aten._softmax)(_softmax_like("softmax"))


@handles(aten._safe_softmax)
def _safe_softmax(c: ImportContext, x: Value, dim: int, dtype: Any = None) -> Value:
    """softmax, but a row that is all -inf gives zeros (not NaN): SDPA's math path uses it for
    fully masked rows. Decomposed so every backend keeps the semantics."""
    y = _softmax_like("softmax")(c, x, dim, dtype)
    d = dim % x.type.rank
    dead = c.op("eq", c.op("amax", x, dims=(d,), keepdim=True), c.tensor(float("-inf"), x))
    return c.op("where", dead, c.tensor(0.0, y), y)
handles(aten.log_softmax, aten._log_softmax)(_softmax_like("log_softmax"))


@handles(aten.layer_norm)
def _layer_norm(c: ImportContext, x: Value, shape: Any, weight: Any = None, bias: Any = None,
                eps: float = 1e-5, cudnn_enable: bool = True) -> Value:
    return c.op("layer_norm", x, weight, bias, normalized_shape=tuple(shape), eps=float(eps))


@handles(aten.native_layer_norm)
def _native_layer_norm(c: ImportContext, x: Value, shape: Any, weight: Any, bias: Any,
                       eps: float) -> tuple:
    """The normalized output, and the mean and 1/std over the normalized dims (kept as size
    1; dead code unless used)."""
    dims = tuple(range(x.type.rank - len(shape), x.type.rank))
    return (_layer_norm(c, x, shape, weight, bias, eps), *_mean_rstd(c, x, dims, eps))


def _mean_rstd(c: ImportContext, x: Value, dims: tuple[int, ...], eps: float) -> tuple:
    if not x.dtype.is_floating_point:
        raise Unsupported("normalization statistics of a non-float tensor")
    mean = c.op("mean", x, dims=dims, keepdim=True)
    var = c.op("var", x, dims=dims, correction=0, keepdim=True)
    return mean, c.op("rsqrt", c.op("add", var, c.tensor(float(eps), var)))


@handles(aten.native_group_norm)
def _native_group_norm(c: ImportContext, x: Value, weight: Any, bias: Any, n: Any, ch: Any,
                       hw: Any, groups: int, eps: float) -> tuple:
    """group_norm, and the (N, groups) mean and 1/std."""
    if not x.type.is_static:
        raise Unsupported("native_group_norm statistics of a symbolic tensor")
    y = c.op("group_norm", x, weight, bias, groups=groups, eps=float(eps))
    grouped = c.op("reshape", x, shape=(x.shape[0], groups, x.type.numel // max(
        x.shape[0] * groups, 1)))
    mean, rstd = _mean_rstd(c, grouped, (2,), eps)
    return (y, c.op("reshape", mean, shape=(x.shape[0], groups)),
            c.op("reshape", rstd, shape=(x.shape[0], groups)))


@handles(aten.rms_norm)
def _rms_norm(c: ImportContext, x: Value, shape: Any, weight: Any = None,
              eps: float | None = None) -> Value:
    return c.op("rms_norm", x, weight, normalized_shape=tuple(shape), eps=eps)


@handles(aten.group_norm)
def _group_norm(c: ImportContext, x: Value, groups: int, weight: Any = None, bias: Any = None,
                eps: float = 1e-5, cudnn_enabled: bool = True) -> Value:
    return c.op("group_norm", x, weight, bias, groups=groups, eps=float(eps))


@handles(aten.batch_norm)
def _batch_norm(c: ImportContext, x: Value, weight: Any, bias: Any, mean: Any, var: Any,
                training: bool, momentum: float, eps: float, cudnn: bool = True) -> Value:
    if training or mean is None:
        raise Unsupported("BatchNorm in training mode (call model.eval())")
    return c.op("batch_norm", x, mean, var, weight, bias, eps=float(eps))


@handles(aten._native_batch_norm_legit_no_training)
def _bn_no_training(c: ImportContext, x: Value, weight: Any, bias: Any, mean: Value, var: Value,
                    momentum: float, eps: float) -> tuple:
    return (c.op("batch_norm", x, mean, var, weight, bias, eps=float(eps)), None, None)


# ---- matmul, conv, attention, pooling, embedding --------------------------------------------
@handles(aten.linear)
def _linear(c: ImportContext, x: Value, w: Value, b: Any = None) -> Value:
    return c.op("linear", x, w, b)


@handles(aten.matmul, aten.mm, aten.bmm)
def _matmul(c: ImportContext, a: Value, b: Value) -> Value:
    if c.is_const(b) and b.type.rank == 2 and a.type.rank >= 2:
        w = c.rw.const(c.rw.constants[b].t().contiguous(), f"{b.name}_t")
        return c.op("linear", a, w)
    return c.op("matmul", a, b)


@handles(aten.addmm)
def _addmm(c: ImportContext, bias: Value, a: Value, b: Value, *, beta: Any = 1,
           alpha: Any = 1) -> Value:
    if beta != 1 or alpha != 1:
        return _baddbmm(c, bias, a, b, beta=beta, alpha=alpha)
    if c.is_const(b) and bias.type.rank == 1:
        w = c.rw.const(c.rw.constants[b].t().contiguous(), f"{b.name}_t")
        return c.op("linear", a, w, bias)
    return c.op("add", c.op("matmul", a, b), bias)


@handles(aten.baddbmm)
def _baddbmm(c: ImportContext, x: Value, a: Value, b: Value, *, beta: Any = 1,
             alpha: Any = 1) -> Value:
    """beta * x + alpha * (a @ b)."""
    prod = c.op("matmul", a, b)
    if alpha != 1:
        prod = c.op("mul", prod, c.tensor(alpha, prod))
    if beta == 0:
        return prod
    base = x if beta == 1 else c.op("mul", x, c.tensor(beta, x))
    return c.op("add", base, prod)


@handles(aten.t, aten.numpy_T)
def _t(c: ImportContext, x: Value) -> Value:
    return x if x.type.rank < 2 else c.op("permute", x, dims=(1, 0))


@handles(aten.transpose)
def _transpose(c: ImportContext, x: Value, d0: int, d1: int) -> Value:
    dims = list(range(x.type.rank))
    d0, d1 = d0 % x.type.rank, d1 % x.type.rank
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return c.op("permute", x, dims=tuple(dims))


def _ntuple(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(v)
    return v * n if len(v) == 1 else v


@handles(aten.conv1d, aten.conv2d, aten.conv3d)
def _convnd(c: ImportContext, x: Value, w: Value, b: Any = None, stride: Any = 1,
            padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Value:
    n = x.type.rank - 2
    dilation = _ntuple(dilation, n)
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif _ntuple(stride, n) == (1,) * n and all(k % 2 for k in w.shape[2:]):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dilation, w.shape[2:], strict=True))
        else:
            raise Unsupported("padding='same' with an even kernel or a stride")
    return c.op("conv", x, w, b, stride=_ntuple(stride, n), padding=_ntuple(padding, n),
                dilation=dilation, groups=groups)


@handles(aten.convolution)
def _convolution(c: ImportContext, x: Value, w: Value, b: Any, stride: Any, padding: Any,
                 dilation: Any, transposed: bool, output_padding: Any, groups: int) -> Value:
    if transposed:
        raise Unsupported("transposed convolution")
    return _convnd(c, x, w, b, stride, padding, dilation, groups)


@handles(aten.scaled_dot_product_attention)
def _sdpa(c: ImportContext, q: Value, k: Value, v: Value, attn_mask: Any = None,
          dropout_p: float = 0.0, is_causal: bool = False, *, scale: float | None = None,
          enable_gqa: bool = False) -> Value:
    if dropout_p > 0:
        raise Unsupported("attention dropout (call model.eval())")
    if enable_gqa:
        raise Unsupported("grouped-query attention")
    return c.op("attention", q, k, v, attn_mask, scale=scale, causal=bool(is_causal))


@handles(aten.max_pool2d)
def _max_pool2d(c: ImportContext, x: Value, kernel: Any, stride: Any = (), padding: Any = 0,
                dilation: Any = 1, ceil_mode: bool = False) -> Value:
    kernel = _ntuple(kernel, 2)
    stride = _ntuple(stride, 2) if stride not in ((), [], None) else kernel
    return c.op("max_pool2d", x, kernel=kernel, stride=stride, padding=_ntuple(padding, 2),
                dilation=_ntuple(dilation, 2), ceil_mode=ceil_mode)


@handles(aten.max_pool2d_with_indices)
def _max_pool2d_idx(c: ImportContext, x: Value, kernel: Any, stride: Any = (),
                    padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False) -> tuple:
    """Pooled values and, when used (dead code otherwise), the indices of the maxima."""
    if x.type.rank != 4:
        raise Unsupported("max_pool2d_with_indices of an unbatched (3-d) input")
    kernel = _ntuple(kernel, 2)
    stride = _ntuple(stride, 2) if stride not in ((), [], None) else kernel
    attrs = {"kernel": kernel, "stride": stride, "padding": _ntuple(padding, 2),
             "dilation": _ntuple(dilation, 2), "ceil_mode": ceil_mode}
    return (c.op("max_pool2d", x, **attrs),
            c.rw.node("max_pool2d_with_indices", x, **attrs).outputs[1])


@handles(aten.max_pool1d_with_indices)
def _max_pool1d_idx(c: ImportContext, x: Value, kernel: Any, stride: Any = (),
                    padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False) -> tuple:
    """Through the 2-d op on an (N, C, 1, L) view (the index h * L + w is then w)."""
    (k,) = _ntuple(kernel, 1)
    (s,) = _ntuple(stride, 1) if stride not in ((), [], None) else (k,)
    y, idx = _max_pool2d_idx(c, _as_2d(c, x), (1, k), (1, s), (0, *_ntuple(padding, 1)),
                             (1, *_ntuple(dilation, 1)), ceil_mode)
    return _from_2d(c, y, x), _from_2d(c, idx, x)


@handles(aten.max_pool1d)
def _max_pool1d(c: ImportContext, x: Value, *args: Any) -> Value:
    return _max_pool1d_idx(c, x, *args)[0]


@handles(aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d)
def _conv_transpose(c: ImportContext, x: Value, w: Value, b: Any = None, stride: Any = 1,
                    padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                    dilation: Any = 1) -> Value:
    n = w.type.rank - 2
    if x.type.rank != n + 2:
        raise Unsupported("transposed convolution of an unbatched input")
    return c.op("conv_transpose", x, w, b, stride=_ntuple(stride, n),
                padding=_ntuple(padding, n), output_padding=_ntuple(output_padding, n),
                dilation=_ntuple(dilation, n), groups=groups)


@handles(aten.einsum)
def _einsum(c: ImportContext, equation: str, xs: Any, path: Any = None) -> Value:
    xs = list(xs)
    if any(x.dtype != xs[0].dtype or not xs[0].dtype.is_floating_point for x in xs):
        raise Unsupported("einsum of non-float or mixed-dtype tensors")
    return c.op("einsum", *xs, equation=equation.replace(" ", ""))


@handles(aten.topk)
def _topk(c: ImportContext, x: Value, k: int, dim: int = -1, largest: bool = True,
          sorted: bool = True) -> tuple:  # noqa: A002
    """Sorted top k (an unsorted request may take any order, sorted included)."""
    if x.type.rank == 0 or not isinstance(k, int) or not x.dtype.is_floating_point:
        raise Unsupported("topk of a 0-d or non-float tensor, or a symbolic k")
    return c.rw.node("topk", x, k=k, dim=dim % x.type.rank, largest=bool(largest)).outputs


def _sort_along(c: ImportContext, x: Value, dim: int, descending: bool) -> tuple:
    if x.type.rank == 0:
        raise Unsupported("sort of a 0-d tensor")
    d = dim % x.type.rank
    return _topk(c, x, _static_dim(x, d, "sort"), d, descending)


@handles(aten.sort.default, aten.sort.stable)
def _sort(c: ImportContext, x: Value, *args: Any, **kw: Any) -> tuple:
    """Ascending or descending along dim, ties in index order (what stable=True promises,
    and what ATen's CPU sort does)."""
    if args and isinstance(args[0], bool) or "stable" in kw:  # sort.stable
        dim = kw.get("dim", args[1] if len(args) > 1 else -1)
        descending = kw.get("descending", args[2] if len(args) > 2 else False)
    else:
        dim = kw.get("dim", args[0] if args else -1)
        descending = kw.get("descending", args[1] if len(args) > 1 else False)
    return _sort_along(c, x, dim, bool(descending))


@handles(aten.argsort.default, aten.argsort.stable)
def _argsort(c: ImportContext, x: Value, *args: Any, **kw: Any) -> Value:
    return _sort(c, x, *args, **kw)[1]


@handles(aten.msort)
def _msort(c: ImportContext, x: Value) -> Value:
    return _sort_along(c, x, 0, False)[0]


@handles(aten.avg_pool2d)
def _avg_pool2d(c: ImportContext, x: Value, kernel: Any, stride: Any = (), padding: Any = 0,
                ceil_mode: bool = False, count_include_pad: bool = True,
                divisor_override: Any = None) -> Value:
    kernel = _ntuple(kernel, 2)
    stride = _ntuple(stride, 2) if stride not in ((), [], None) else kernel
    return c.op("avg_pool2d", x, kernel=kernel, stride=stride, padding=_ntuple(padding, 2),
                ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                divisor_override=divisor_override)


@handles(aten.adaptive_avg_pool2d, aten._adaptive_avg_pool2d)
def _adaptive_avg_pool2d(c: ImportContext, x: Value, output_size: Any) -> Value:
    size = _ntuple(output_size, 2)
    if size == (1, 1):
        return c.op("mean", x, dims=(x.type.rank - 2, x.type.rank - 1), keepdim=True)
    return c.op("adaptive_avg_pool2d", x, output_size=size)


@handles(aten.embedding)
def _embedding(c: ImportContext, w: Value, idx: Value, padding_idx: int = -1,
               scale_grad_by_freq: bool = False, sparse: bool = False) -> Value:
    return c.op("embedding", w, idx)


# ---- shape ops ------------------------------------------------------------------------------
def resolve_shape(shape: Any, numel: int) -> tuple[int, ...]:
    """A concrete shape for ``numel`` elements, filling in one -1."""
    shape = [int(s) for s in shape]
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = numel // known if known else 0
    return tuple(shape)


@handles(aten.view, aten.reshape, aten._unsafe_view)
def _reshape(c: ImportContext, x: Value, shape: Any) -> Value:
    if isinstance(shape, torch.dtype):
        raise Unsupported("view as another dtype")
    if is_symbolic(shape) or not x.type.is_static:
        shape = c.out_shape() or shape  # torch resolved the -1 symbolically
        if -1 in shape:
            raise Unsupported("reshape with -1 of a symbolic tensor outside a traced graph")
    else:
        shape = resolve_shape(shape, x.type.numel)
    shape = tuple(shape)
    return x if shape == x.shape else c.op("reshape", x, shape=shape)


@handles(aten.unsqueeze)
def _unsqueeze(c: ImportContext, x: Value, dim: int) -> Value:
    shape = list(x.shape)
    shape.insert(dim % (x.type.rank + 1), 1)
    return c.op("reshape", x, shape=tuple(shape))


@handles(aten.squeeze)
def _squeeze(c: ImportContext, x: Value, dim: Any = None) -> Value:
    if isinstance(dim, list | tuple) and not dim:  # squeeze(x, ()) squeezes no dim
        return x
    dims = set(_dims(x, dim))
    shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return x if shape == x.shape else c.op("reshape", x, shape=shape)


@handles(aten.flatten)
def _flatten(c: ImportContext, x: Value, start: int = 0, end: int = -1) -> Value:
    if x.type.rank == 0:
        return c.op("reshape", x, shape=(1,))
    s, e = start % x.type.rank, end % x.type.rank
    shape = x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return x if shape == x.shape else c.op("reshape", x, shape=shape)


@handles(aten.permute)
def _permute(c: ImportContext, x: Value, dims: Any) -> Value:
    dims = tuple(d % x.type.rank for d in dims)
    return x if dims == tuple(range(x.type.rank)) else c.op("permute", x, dims=dims)


@handles(aten.expand)
def _expand(c: ImportContext, x: Value, shape: Any, implicit: bool = False) -> Value:
    pad = len(shape) - x.type.rank
    full = tuple(x.shape[i - pad] if (isinstance(s, int) and s == -1) else
                 (s if is_symbolic(s) else int(s)) for i, s in enumerate(shape))
    return x if full == x.shape else c.op("expand", x, shape=full)


@handles(aten.expand_as)
def _expand_as(c: ImportContext, x: Value, other: Value) -> Value:
    return _expand(c, x, other.shape)


@handles(aten.copy.default)
def _copy(c: ImportContext, dst: Value, src: Any, non_blocking: bool = False) -> Value:
    """Functional ``dst.copy_(src)`` (how a functionalised graph writes an input updated in
    place): ``src`` cast to ``dst``'s dtype and broadcast to its shape."""
    src = c.tensor(src, dst)
    if src.type.device != dst.type.device:
        raise Unsupported("copy across devices")
    if src.dtype != dst.dtype:
        src = c.op("cast", src, dtype=dst.dtype)
    return _expand(c, src, dst.shape)


@handles(torch.ops.prims.broadcast_in_dim.default)
def _broadcast_in_dim(c: ImportContext, x: Value, shape: Any, dims: Any) -> Value:
    """``prims.broadcast_in_dim``: ``x``'s dims placed at ``dims`` of ``shape``, the others
    broadcast (what torch's batch-norm decompositions emit)."""
    dims = tuple(dims)
    placed = tuple(x.shape[dims.index(i)] if i in dims else 1 for i in range(len(shape)))
    y = x if placed == x.shape else c.op("reshape", x, shape=placed)
    return _expand(c, y, tuple(shape))


_TO_END = 2**62
"""Slice ends at or past this mean "to the end" (torch passes sys.maxsize)."""


@handles(aten.slice)
def _slice(c: ImportContext, x: Value, dim: int = 0, start: Any = None, end: Any = None,
           step: int = 1) -> Value:
    dim = dim % x.type.rank
    size = x.shape[dim]
    if is_symbolic((size, start, end)):
        start = 0 if start is None else start
        to_end = end is None or (isinstance(end, int) and end >= _TO_END) or end == size
        if isinstance(start, int) and start < 0:
            start = size + start  # counted from the end, as Python slices do
        if isinstance(end, int) and end < 0:
            end = size + end
        if start == 0 and to_end and step == 1:
            return x
        return c.op("slice", x, dim=dim, start=start, end=size if to_end else end, step=step)
    start, end, _ = slice(start, end, step).indices(size)
    if start == 0 and end >= size and step == 1:
        return x
    return c.op("slice", x, dim=dim, start=start, end=max(end, start), step=step)


@handles(aten.select)
def _select(c: ImportContext, x: Value, dim: int, index: int) -> Value:
    dim = dim % x.type.rank
    size = x.shape[dim]
    if is_symbolic((size, index)):
        return c.op("select", x, dim=dim, index=size + index
                    if isinstance(index, int) and index < 0 else index)
    return c.op("select", x, dim=dim, index=index % size)


@handles(aten.narrow)
def _narrow(c: ImportContext, x: Value, dim: int, start: int, length: int) -> Value:
    return _slice(c, x, dim, start, start + length)


@handles(aten.cat, aten.concat, aten.concatenate)
def _cat(c: ImportContext, xs: Any, dim: int = 0) -> Value:
    kept = [x for x in xs if not x.type.is_static or x.type.numel > 0 or x.type.rank > 1]
    xs = kept or list(xs)[:1]  # every input empty: so is the result
    if len(xs) == 1:
        return xs[0]
    return c.op("concat", *xs, dim=dim % xs[0].type.rank)


def _split_at(c: ImportContext, x: Value, sizes: list[int], dim: int) -> list[Value]:
    dim, out, start = dim % x.type.rank, [], 0
    for s in sizes:
        out.append(_slice(c, x, dim, start, start + s))
        start += s
    return out


@handles(aten.split.Tensor, aten.split_with_sizes, aten.split.sizes)
def _split(c: ImportContext, x: Value, size: Any, dim: int = 0) -> list[Value]:
    n = x.shape[dim % x.type.rank]
    if is_symbolic((n, size)):
        if not isinstance(size, list | tuple) or is_symbolic(tuple(size)):
            raise Unsupported("split of a symbolic dim into pieces of symbolic count")
    sizes = [size] * (n // size) + ([n % size] if n % size else []) if isinstance(size, int) \
        else list(size)
    return _split_at(c, x, sizes, dim)


@handles(aten.chunk)
def _chunk(c: ImportContext, x: Value, chunks: int, dim: int = 0) -> list[Value]:
    n = x.shape[dim % x.type.rank]
    if is_symbolic(n):
        raise Unsupported("chunk of a symbolic dim")
    size = -(-n // chunks)
    return _split(c, x, size, dim)


@handles(aten.unbind)
def _unbind(c: ImportContext, x: Value, dim: int = 0) -> list[Value]:
    dim = dim % x.type.rank
    if is_symbolic(x.shape[dim]):
        raise Unsupported("unbind along a symbolic dim")
    return [c.op("select", x, dim=dim, index=i) for i in range(x.shape[dim])]


@handles(aten.constant_pad_nd)
def _pad(c: ImportContext, x: Value, pads: Any, value: float = 0.0) -> Value:
    if any(isinstance(p, int) and p < 0 for p in pads):
        raise Unsupported("negative padding")
    return c.op("pad", x, pads=tuple(pads), value=value)


@handles(aten.pad)
def _pad_mode(c: ImportContext, x: Value, pads: Any, mode: str = "constant",
              value: Any = None) -> Value:
    if mode in _PAD_MODES:
        return _pad_by_index(c, x, pads, mode)
    if mode != "constant":
        raise Unsupported(f"{mode} padding")
    return _pad(c, x, pads, 0.0 if value is None else value)


@handles(aten.stack)
def _stack(c: ImportContext, xs: Any, dim: int = 0) -> Value:
    rank = xs[0].type.rank + 1
    d = dim % rank
    parts = [c.op("reshape", x, shape=(*x.shape[:d], 1, *x.shape[d:])) for x in xs]
    return parts[0] if len(parts) == 1 else c.op("concat", *parts, dim=d)


@handles(aten.repeat_interleave.self_int)
def _repeat_interleave(c: ImportContext, x: Value, repeats: Any, dim: Any = None,
                       output_size: Any = None) -> Value:
    """Each element ``repeats`` times along ``dim``: a new axis after it, expanded, merged."""
    if not isinstance(repeats, int):
        raise Unsupported("repeat_interleave with symbolic repeats")
    if dim is None:  # over the flattened tensor
        if not x.type.is_static:
            raise Unsupported("repeat_interleave over a flattened symbolic tensor")
        x, dim = (x if x.shape == (x.type.numel,) else
                  c.op("reshape", x, shape=(x.type.numel,))), 0
    d = dim % x.type.rank
    s = x.shape
    wide = c.op("reshape", x, shape=(*s[:d + 1], 1, *s[d + 1:]))
    wide = c.op("expand", wide, shape=(*s[:d + 1], repeats, *s[d + 1:]))
    return c.op("reshape", wide, shape=(*s[:d], s[d] * repeats, *s[d + 1:]))


@handles(aten.repeat)
def _repeat(c: ImportContext, x: Value, reps: Any) -> Value:
    """Tile: each dim ``d`` becomes ``reps[d]`` copies of it, as (reps, size) merged."""
    reps = tuple(r if is_symbolic(r) else int(r) for r in reps)
    shape = (1,) * (len(reps) - x.type.rank) + tuple(x.shape)
    y = c.op("reshape", x, shape=shape) if len(shape) != x.type.rank else x
    split = tuple(v for r, n in zip(reps, shape, strict=True) for v in (1, n))
    wide = tuple(v for r, n in zip(reps, shape, strict=True) for v in (r, n))
    y = c.op("expand", c.op("reshape", y, shape=split), shape=wide)
    return c.op("reshape", y, shape=tuple(r * n for r, n in zip(reps, shape, strict=True)))


@handles(aten._weight_norm)
def _weight_norm(c: ImportContext, v: Value, g: Value, dim: int = 0) -> Value:
    """v * g / ||v|| over every dim but ``dim``."""
    dims = tuple(d for d in range(v.type.rank) if d != dim % v.type.rank)
    norm = c.op("sqrt", c.op("sum", c.op("mul", v, v), dims=dims, keepdim=True))
    return c.op("mul", v, c.op("div", g, norm))


@handles(aten.index_select)
def _index_select(c: ImportContext, x: Value, dim: int, index: Value) -> Value:
    if x.type.rank == 0:
        if index.type.is_static and index.type.numel == 1 and index.type.rank <= 1:
            return x  # the one valid index of a 0-d tensor selects it, as a 0-d tensor
        raise Unsupported("index_select on a 0-d tensor")
    return c.op("index_select", x, index, dim=dim % x.type.rank)


@handles(aten.gather)
def _gather(c: ImportContext, x: Value, dim: int, index: Value, sparse_grad: bool = False) -> Value:
    if x.type.rank == 0:
        raise Unsupported("gather on a 0-d tensor")
    return c.op("gather", x, index, dim=dim % x.type.rank)


def _like(fill: Any) -> Handler:
    def handler(c: ImportContext, x: Value, *args: Any, **kw: Any) -> Value:
        value = (args[0] if args else kw.get("fill_value", 0)) if fill is None else fill
        dtype = kw.get("dtype") or x.dtype
        return c.filled(x.shape, value, dtype)
    return handler


handles(aten.zeros_like, aten.empty_like)(_like(0))
handles(aten.ones_like)(_like(1))
handles(aten.full_like)(_like(None))


def _new_filled(fill: Any) -> Handler:
    def handler(c: ImportContext, x: Value, size: Any, *args: Any, **kw: Any) -> Value:
        value = (args[0] if args else kw.get("fill_value", 0)) if fill is None else fill
        dtype = kw.get("dtype") or x.dtype
        return c.filled(tuple(size), value, dtype)
    return handler


handles(aten.new_zeros, aten.new_empty)(_new_filled(0))
handles(aten.new_ones)(_new_filled(1))
handles(aten.new_full)(_new_filled(None))


@handles(aten.arange)
def _arange(c: ImportContext, *args: Any, dtype: Any = None, device: Any = None, **_: Any
            ) -> Value:
    """``arange`` with a symbolic bound (a static one is evaluated at capture instead)."""
    if not is_symbolic(args) or not all(isinstance(a, int) or is_symbolic(a) for a in args):
        raise Unsupported("arange of non-integer bounds")
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args[:2], args[2] if
                                                               len(args) > 2 else 1)
    dev = torch.device(device).type if device is not None else "cpu"
    return c.op("arange", start=start, end=end, step=step, dtype=dtype or torch.int64,
                device=dev)


def _factory(fill: Any) -> Handler:
    """``zeros``/``ones``/``full``/``empty`` of a symbolic size (static ones fold at capture)."""
    def handler(c: ImportContext, size: Any, *args: Any, dtype: Any = None, **_: Any) -> Value:
        value = args[0] if fill is None else fill
        if not isinstance(value, bool | int | float):
            raise Unsupported("fill value that is not a Python scalar")
        dt = dtype or (torch.get_default_dtype() if isinstance(value, float) or fill is not None
                       else torch.tensor(value).dtype)
        return c.filled(tuple(size), value, dt)
    return handler


handles(aten.zeros, aten.empty.memory_format)(_factory(0))
handles(aten.ones)(_factory(1))
handles(aten.full)(_factory(None))


@handles(aten.fill.Scalar)
def _fill(c: ImportContext, x: Value, value: Any) -> Value:
    return c.filled(x.shape, value, x.dtype)


def _triangle(lower: bool) -> Handler:
    def handler(c: ImportContext, x: Value, diagonal: int = 0) -> Value:
        if x.type.rank < 2:
            raise Unsupported("tril/triu of a tensor with fewer than 2 dims")
        if is_symbolic(x.shape[-2:]):
            raise Unsupported("tril/triu over symbolic dims")
        ones = torch.ones(x.shape[-2:], dtype=torch.bool)
        keep = ones.tril(diagonal) if lower else ones.triu(diagonal)
        return c.op("where", c.rw.const(keep, "tri_mask"), x, c.tensor(0, x))
    return handler


handles(aten.tril)(_triangle(True))
handles(aten.triu)(_triangle(False))


def _any_all(is_any: bool) -> Handler:
    def handler(c: ImportContext, x: Value, dim: Any = None, keepdim: bool = False) -> Value:
        b = x if x.dtype == torch.bool else c.op("ne", x, c.tensor(0, x))
        return c.op("amax" if is_any else "amin", b, dims=_dims(x, dim), keepdim=bool(keepdim))
    return handler


handles(aten.any.default, aten.any.dim, aten.any.dims)(_any_all(True))
handles(aten.all.default, aten.all.dim, aten.all.dims)(_any_all(False))


def _wrap_negative(c: ImportContext, index: Value, size: int) -> Value:
    """``index`` with negative entries counted from the end (no-op for constants >= 0)."""
    if c.is_const(index) and bool((c.rw.constants[index] >= 0).all()):
        return index
    if _nonnegative(c, index):
        return index
    negative = c.op("cast", c.op("lt", index, c.tensor(0, index)), dtype=index.dtype)
    return c.op("add", index, c.op("mul", negative, c.tensor(size, index)))


def _nonnegative(c: ImportContext, v: Value | None, depth: int = 0) -> bool:
    """Whether ``v`` is provably >= 0: a non-negative constant, an ``arange`` with a
    non-negative start and step, or sums, products, views and casts of those (HF masks
    index with such): indices that need no wrapping."""
    if v is None or depth > 12:
        return False
    if c.is_const(v):
        return bool((c.rw.constants[v] >= 0).all())
    node = next((n for n in reversed(c.rw.nodes) if v in n.outputs), None)
    if node is None:
        return False
    if node.op == "nonzero":
        return True
    if node.op == "arange":
        start, step = node.attrs["start"], node.attrs["step"]
        return (not isinstance(start, int) or start >= 0) and isinstance(step, int) and step > 0
    if node.op in ("reshape", "expand", "cast", "slice", "select", "permute"):
        return _nonnegative(c, node.inputs[0], depth + 1)
    if node.op in ("add", "mul", "maximum"):
        return all(_nonnegative(c, x, depth + 1) for x in node.inputs)
    return False


@handles(aten.index.Tensor)
def _index(c: ImportContext, x: Value, indices: Any) -> Value:
    """``x[..., i0, i1, ...]`` with adjacent integer index tensors, as one index_select."""
    idx = list(indices)
    while idx and idx[-1] is None:
        idx.pop()
    pos = [i for i, v in enumerate(idx) if v is not None]
    if not pos or pos != list(range(pos[0], pos[-1] + 1)):
        raise Unsupported("index tensors separated by full slices")
    if len(pos) == 1 and isinstance(idx[pos[0]], Value) and idx[pos[0]].dtype in (
            torch.bool, torch.uint8):  # x[mask]: a size that depends on the data
        mask = idx[pos[0]]
        if mask.dtype != torch.bool:
            mask = c.op("ne", mask, c.tensor(0, mask))
        return aten_select.masked_index(c, x, mask, pos[0])
    if any(not isinstance(idx[i], Value) or not _is_integer(idx[i].dtype) for i in pos):
        raise Unsupported("boolean-mask indexing together with other index tensors")
    first, last = pos[0], pos[-1]
    flat: Value | None = None
    stride = 1
    for j in reversed(pos):  # row-major linear index over the indexed dims
        i = _wrap_negative(c, idx[j], x.shape[j])
        term = i if stride == 1 else c.op("mul", i, c.tensor(stride, i))
        flat = term if flat is None else c.op("add", term, flat)
        stride *= x.shape[j]
    assert flat is not None
    merged = x.shape[:first] + (stride,) + x.shape[last + 1:]
    xr = x if merged == x.shape else c.op("reshape", x, shape=merged)
    n = flat.type.numel
    flat1 = flat if flat.shape == (n,) else c.op("reshape", flat, shape=(n,))
    picked = c.op("index_select", xr, flat1, dim=first)
    shape = x.shape[:first] + flat.shape + x.shape[last + 1:]
    return picked if picked.shape == shape else c.op("reshape", picked, shape=shape)


def _is_integer(dtype: torch.dtype) -> bool:
    return not dtype.is_floating_point and not dtype.is_complex and dtype not in (
        torch.bool, torch.uint8)


@handles(aten.diff)
def _diff(c: ImportContext, x: Value, n: int = 1, dim: int = -1, prepend: Any = None,
          append: Any = None) -> Value:
    if prepend is not None or append is not None:
        d = dim % x.type.rank
        parts = [_diff_edge(c, v, x, d) for v in (prepend, x, append) if v is not None]
        x = c.op("concat", *parts, dim=d)
    for _ in range(n - 1):
        x = _diff(c, x, 1, dim)
    if n == 0:
        return x
    dim, size = dim % x.type.rank, x.shape[dim % x.type.rank]
    hi = c.op("slice", x, dim=dim, start=1, end=size)
    lo = c.op("slice", x, dim=dim, start=0, end=size - 1 if is_symbolic(size) else max(size - 1, 0))
    return c.op("ne" if x.dtype == torch.bool else "sub", hi, lo)


def _diff_edge(c: ImportContext, v: Any, x: Value, dim: int) -> Value:
    """diff's prepend/append: a scalar is a size-1 slice along ``dim``."""
    if isinstance(v, Value):
        if v.dtype != x.dtype:
            raise Unsupported("diff with a prepend/append of another dtype")
        return v
    shape = tuple(1 if i == dim else s for i, s in enumerate(x.shape))
    return c.filled(shape, v, x.dtype)


# ---- data movement by constant index tables -------------------------------------------------
def _static_dim(x: Value, dim: int, what: str) -> int:
    size = x.shape[dim]
    if is_symbolic(size):
        raise Unsupported(f"{what} along a symbolic dim")
    return int(size)


def _take(c: ImportContext, x: Value, dim: int, index: list[int] | torch.Tensor) -> Value:
    """``x`` indexed along ``dim`` by a constant index (no node for the identity)."""
    idx = torch.as_tensor(index, dtype=torch.int64)
    if idx.numel() == x.shape[dim] and torch.equal(idx, torch.arange(idx.numel())):
        return x
    return c.op("index_select", x, c.rw.const(idx, "index"), dim=dim)


@handles(aten.flip, torch.ops.prims.rev.default)
def _flip(c: ImportContext, x: Value, dims: Any) -> Value:
    for d in sorted({d % max(x.type.rank, 1) for d in dims}):
        if x.type.rank:
            x = _take(c, x, d, list(range(_static_dim(x, d, "flip") - 1, -1, -1)))
    return x


@handles(aten.fliplr)
def _fliplr(c: ImportContext, x: Value) -> Value:
    return _flip(c, x, [1])


@handles(aten.flipud)
def _flipud(c: ImportContext, x: Value) -> Value:
    return _flip(c, x, [0])


def _pad_index(mode: str, size: int, lo: int, hi: int) -> list[int]:
    """Where each entry of a dim padded by (lo, hi) comes from (negative pads crop)."""
    out = []
    for i in range(-lo, size + hi):
        if mode == "replicate":
            out.append(min(max(i, 0), size - 1))
        elif mode == "circular":
            out.append(i % size)
        else:  # reflect, without repeating the edge
            period = 2 * (size - 1)
            j = i % period if period else 0
            out.append(j if j < size else period - j)
    return out


_PAD_MODES = ("reflect", "replicate", "circular")


def _pad_by_index(c: ImportContext, x: Value, pads: Any, mode: str) -> Value:
    """Reflect, replicate or circular padding: each padded dim gathered by a constant index
    (F.pad order: the last dim first)."""
    pads = list(pads)
    if any(not isinstance(p, int) for p in pads):
        raise Unsupported(f"{mode} padding by symbolic amounts")
    for i in range(len(pads) // 2):
        d = x.type.rank - 1 - i
        lo, hi = pads[2 * i], pads[2 * i + 1]
        size = _static_dim(x, d, f"{mode} padding")
        if mode == "reflect" and (lo >= size or hi >= size):
            raise Unsupported("reflect padding as large as the dim")  # eager refuses it
        if mode == "circular" and (lo > size or hi > size):
            raise Unsupported("circular padding larger than the dim")
        if (lo or hi) and size:
            x = _take(c, x, d, _pad_index(mode, size, lo, hi))
    return x


for _mode, _targets in {"reflect": ("reflection_pad1d", "reflection_pad2d", "reflection_pad3d"),
                        "replicate": ("replication_pad1d", "replication_pad2d",
                                      "replication_pad3d"),
                        "circular": ("_pad_circular",)}.items():
    for _t in _targets:
        if hasattr(aten, _t):
            handles(getattr(aten, _t))(
                (lambda m: lambda c, x, pads: _pad_by_index(c, x, pads, m))(_mode))


def _diag_index(rows: int, cols: int, offset: int) -> list[int]:
    """Flat indices of the ``offset`` diagonal of a rows x cols matrix."""
    r0, c0 = (0, offset) if offset >= 0 else (-offset, 0)
    n = max(min(rows - r0, cols - c0), 0)
    return [(r0 + i) * cols + c0 + i for i in range(n)]


@handles(aten.diagonal, aten.diagonal_copy, aten.linalg_diagonal)
def _diagonal(c: ImportContext, x: Value, offset: int = 0, dim1: int = 0, dim2: int = 1
              ) -> Value:
    """The diagonal moved to the last dim: dim1, dim2 moved last, merged, gathered."""
    r = x.type.rank
    d1, d2 = dim1 % r, dim2 % r
    rows, cols = _static_dim(x, d1, "diagonal"), _static_dim(x, d2, "diagonal")
    rest = [d for d in range(r) if d not in (d1, d2)]
    y = _permute(c, x, (*rest, d1, d2))
    y = c.op("reshape", y, shape=(*(x.shape[d] for d in rest), rows * cols))
    return c.op("index_select", y, c.rw.const(torch.tensor(_diag_index(rows, cols, offset),
                                                           dtype=torch.int64), "diag"),
                dim=len(rest))


@handles(aten.diag)
def _diag(c: ImportContext, x: Value, diagonal: int = 0) -> Value:
    """A matrix's diagonal, or a vector as a diagonal matrix (zeros elsewhere)."""
    if x.type.rank == 2:
        return _diagonal(c, x, diagonal)
    if x.type.rank != 1:
        raise Unsupported("diag of a tensor that is not 1-d or 2-d")
    n = _static_dim(x, 0, "diag")
    m = n + abs(diagonal)
    src = torch.full((m * m,), n, dtype=torch.int64)  # entry n: the appended zero
    src[_diag_index(m, m, diagonal)] = torch.arange(n)
    ext = c.op("concat", x, c.filled((1,), 0, x.dtype), dim=0)
    return c.op("reshape", c.op("index_select", ext, c.rw.const(src, "diag"), dim=0),
                shape=(m, m))


@handles(aten.unfold)
def _unfold(c: ImportContext, x: Value, dim: int, size: int, step: int) -> Value:
    """Windows of ``size`` every ``step`` along ``dim``, the window as a new last dim."""
    if x.type.rank == 0:
        if size != 1:
            raise Unsupported("unfold of a 0-d tensor in windows of more than 1")
        return c.op("reshape", x, shape=(1,))
    d = dim % x.type.rank
    n = _static_dim(x, d, "unfold")
    if size > n or step < 1:
        raise Unsupported("unfold with windows larger than the dim")  # eager refuses it too
    k = (n - size) // step + 1
    idx = [w * step + i for w in range(k) for i in range(size)]
    y = c.op("index_select", x, c.rw.const(torch.tensor(idx, dtype=torch.int64), "windows"),
             dim=d)
    y = c.op("reshape", y, shape=(*x.shape[:d], k, size, *x.shape[d + 1:]))
    r = x.type.rank + 1
    return _permute(c, y, (*range(d + 1), *range(d + 2, r), d + 1))


# ---- broadcasting and stacking ----------------------------------------------------------------
def _broadcast_to(c: ImportContext, x: Value, shape: tuple) -> Value:
    if x.shape == shape:
        return x
    if x.type.rank < len(shape):
        x = c.op("reshape", x, shape=(1,) * (len(shape) - x.type.rank) + tuple(x.shape))
    return x if x.shape == shape else c.op("expand", x, shape=shape)


@handles(aten.broadcast_tensors)
def _broadcast_tensors(c: ImportContext, xs: Any) -> list[Value]:
    if any(not x.type.is_static for x in xs):
        raise Unsupported("broadcast_tensors of symbolic shapes")
    shape = tuple(torch.broadcast_shapes(*(tuple(x.shape) for x in xs)))
    return [_broadcast_to(c, x, shape) for x in xs]


@handles(aten.broadcast_to)
def _broadcast_to_handler(c: ImportContext, x: Value, size: Any) -> Value:
    return _expand(c, x, size)


@handles(aten.outer, aten.ger)
def _outer(c: ImportContext, a: Value, b: Value) -> Value:
    return c.op("mul", c.op("reshape", a, shape=(a.shape[0], 1)),
                c.op("reshape", b, shape=(1, b.shape[0])))


@handles(aten.meshgrid.default, aten.meshgrid.indexing)
def _meshgrid(c: ImportContext, xs: Any, *, indexing: str = "ij") -> list[Value]:
    xs = list(xs)
    if any(x.type.rank > 1 for x in xs):
        raise Unsupported("meshgrid of tensors with more than one dim")
    flat = [x if x.type.rank == 1 else c.op("reshape", x, shape=(1,)) for x in xs]
    order = list(range(len(flat)))
    if indexing == "xy" and len(flat) >= 2:
        order[0], order[1] = 1, 0
    shape = tuple(flat[i].shape[0] for i in order)
    out = []
    for i, x in enumerate(flat):
        pos = order.index(i)
        v = c.op("reshape", x, shape=tuple(x.shape[0] if j == pos else 1
                                           for j in range(len(flat))))
        out.append(_broadcast_to(c, v, shape))
    return out


@handles(aten.tile)
def _tile(c: ImportContext, x: Value, reps: Any) -> Value:
    reps = tuple(reps)
    reps = (1,) * (x.type.rank - len(reps)) + reps
    return _repeat(c, x, reps)


@handles(aten.sum_to_size)
def _sum_to_size(c: ImportContext, x: Value, size: Any) -> Value:
    size = tuple(size)
    lead = x.type.rank - len(size)
    dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(size)
                                      if s == 1 and x.shape[lead + i] != 1)
    if not dims:
        return x
    y = c.op("sum", x, dims=dims, keepdim=True)
    return c.op("reshape", y, shape=size) if y.shape != size else y


@handles(aten.take_along_dim)
def _take_along_dim(c: ImportContext, x: Value, index: Value, dim: int | None = None) -> Value:
    if dim is None:
        flat = c.op("reshape", x, shape=(x.type.numel,))
        return c.op("gather", flat, c.op("reshape", index, shape=(index.type.numel,)), dim=0)
    d = dim % x.type.rank
    if not (x.type.is_static and index.type.is_static):
        raise Unsupported("take_along_dim of symbolic shapes")
    xs = list(x.shape)
    ix = list(index.shape)
    xs[d] = ix[d] = 1
    shape = tuple(torch.broadcast_shapes(tuple(xs), tuple(ix)))
    xb = _broadcast_to(c, x, shape[:d] + (x.shape[d],) + shape[d + 1:])
    ib = _broadcast_to(c, index, shape[:d] + (index.shape[d],) + shape[d + 1:])
    return c.op("gather", xb, _wrap_negative(c, ib, x.shape[d]), dim=d)


# ---- scatter and index_put ----------------------------------------------------------------------
def _src_like(c: ImportContext, x: Value, index: Value, src: Any) -> Value:
    """``src`` as a tensor of ``index``'s shape and ``x``'s dtype (torch reads only the
    leading part of a larger src)."""
    if not isinstance(src, Value):
        return c.filled(tuple(index.shape), src, x.dtype)
    if src.dtype != x.dtype:
        src = c.op("cast", src, dtype=x.dtype)
    for d, (n, m) in enumerate(zip(index.shape, src.shape, strict=True)):
        if n != m:
            src = c.op("slice", src, dim=d, start=0, end=n)
    return src


def _scatter_op(c: ImportContext, x: Value, dim: int, index: Value, src: Any,
                reduce: str) -> Value:
    if x.type.rank == 0 or index.type.rank != x.type.rank:
        raise Unsupported("scatter of a 0-d tensor or with an index of another rank")
    if not (x.type.is_static and index.type.is_static):
        raise Unsupported("scatter with symbolic shapes")
    return c.op("scatter", x, index, _src_like(c, x, index, src), dim=dim % x.type.rank,
                reduce=reduce)


_SCATTER_REDUCE = {"add": "sum", "sum": "sum", "multiply": "prod", "prod": "prod",
                   "amax": "amax", "amin": "amin"}


@handles(aten.scatter.src, aten.scatter.value, aten.scatter.reduce, aten.scatter.value_reduce)
def _scatter(c: ImportContext, x: Value, dim: int, index: Value, src: Any, *,
             reduce: str | None = None) -> Value:
    if reduce is not None and reduce not in _SCATTER_REDUCE:
        raise Unsupported(f"scatter with reduce={reduce!r}")
    return _scatter_op(c, x, dim, index, src, _SCATTER_REDUCE.get(reduce, "none")
                       if reduce else "none")


@handles(aten.scatter_add)
def _scatter_add(c: ImportContext, x: Value, dim: int, index: Value, src: Value) -> Value:
    return _scatter_op(c, x, dim, index, src, "sum")


def _identity_of(reduce: str, dtype: torch.dtype) -> Any:
    if reduce == "sum":
        return 0
    if reduce == "prod":
        return 1
    if dtype.is_floating_point:
        return float("-inf") if reduce == "amax" else float("inf")
    info = torch.iinfo(dtype)
    return info.min if reduce == "amax" else info.max


@handles(aten.scatter_reduce.two)
def _scatter_reduce(c: ImportContext, x: Value, dim: int, index: Value, src: Value,
                    reduce: str, *, include_self: bool = True) -> Value:
    """scatter_reduce; without include_self, the indexed entries of x are first set to the
    reduction's identity (every duplicate writes the same value, so order does not matter)."""
    if reduce == "mean" and x.dtype.is_floating_point:
        return _scatter_mean(c, x, dim, index, src, include_self)
    if reduce not in _SCATTER_REDUCE or x.dtype == torch.bool:
        raise Unsupported(f"scatter_reduce with reduce={reduce!r}")
    r = _SCATTER_REDUCE[reduce]
    if not include_self:
        x = _scatter_op(c, x, dim, index, _identity_of(r, x.dtype), "none")
    return _scatter_op(c, x, dim, index, src, r)


def _scatter_mean(c: ImportContext, x: Value, dim: int, index: Value, src: Value,
                  include_self: bool) -> Value:
    """(sum of the scattered entries [+ x]) / (their count [+ 1]); x where none lands."""
    base = x if include_self else _scatter_op(c, x, dim, index, 0.0, "none")
    total = _scatter_op(c, base, dim, index, src, "sum")
    ones = c.filled(tuple(index.shape), 1.0, x.dtype)
    start = c.filled(tuple(x.shape), 1.0 if include_self else 0.0, x.dtype)
    count = _scatter_op(c, start, dim, index, ones, "sum")
    none = c.op("eq", count, c.tensor(0.0, count))
    mean = c.op("div", total, c.op("where", none, c.tensor(1.0, count), count))
    return c.op("where", none, x, mean)


@handles(aten.index_put)
def _index_put(c: ImportContext, x: Value, indices: Any, values: Value,
               accumulate: bool = False) -> Value:
    idx = list(indices)
    if not idx or any(not isinstance(i, Value) or not _is_integer(i.dtype) for i in idx):
        raise Unsupported("index_put with boolean masks or skipped (None) dims")
    if not (x.type.is_static and all(i.type.is_static for i in idx) and values.type.is_static):
        raise Unsupported("index_put with symbolic shapes")
    if values.dtype != x.dtype:
        values = c.op("cast", values, dtype=x.dtype)
    return c.op("index_put", x, values, *idx, accumulate=bool(accumulate))


# ---- 1-d pooling through the 2-d ops ----------------------------------------------------------
def _as_2d(c: ImportContext, x: Value) -> Value:
    """(N, C, L) or (C, L) as (N, C, 1, L)."""
    if x.type.rank not in (2, 3):
        raise Unsupported("1-d pooling of a tensor that is not 2-d or 3-d")
    lead = x.shape[:-1] if x.type.rank == 3 else (1, x.shape[0])
    return c.op("reshape", x, shape=(*lead, 1, x.shape[-1]))


def _from_2d(c: ImportContext, y: Value, x: Value) -> Value:
    return c.op("reshape", y, shape=(*x.shape[:-1], y.shape[-1]))


@handles(aten.adaptive_avg_pool1d)
def _adaptive_avg_pool1d(c: ImportContext, x: Value, output_size: Any) -> Value:
    (size,) = _ntuple(output_size, 1)
    return _from_2d(c, _adaptive_avg_pool2d(c, _as_2d(c, x), (1, size)), x)


@handles(aten.avg_pool1d)
def _avg_pool1d(c: ImportContext, x: Value, kernel: Any, stride: Any = (), padding: Any = 0,
                ceil_mode: bool = False, count_include_pad: bool = True) -> Value:
    (k,) = _ntuple(kernel, 1)
    (s,) = _ntuple(stride, 1) if stride not in ((), [], None) else (k,)
    (p,) = _ntuple(padding, 1)
    y = c.op("avg_pool2d", _as_2d(c, x), kernel=(1, k), stride=(1, s), padding=(0, p),
             ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=None)
    return _from_2d(c, y, x)


# ---- losses ------------------------------------------------------------------------------------
def _reduce_loss(c: ImportContext, loss: Value, reduction: int) -> Value:
    """Reduction.NONE (0), MEAN (1) or SUM (2)."""
    if reduction == 0:
        return loss
    return c.op("mean" if reduction == 1 else "sum", loss, dims=_dims(loss, None))


def _float_operands(c: ImportContext, x: Value, y: Value) -> tuple[Value, Value]:
    if not (x.dtype.is_floating_point and y.dtype.is_floating_point):
        raise Unsupported("loss of non-float tensors")
    return x, y


@handles(aten.mse_loss)
def _mse_loss(c: ImportContext, x: Value, y: Value, reduction: int = 1) -> Value:
    x, y = _float_operands(c, x, y)
    d = c.op("sub", x, y)
    return _reduce_loss(c, c.op("mul", d, d), reduction)


@handles(aten.l1_loss)
def _l1_loss(c: ImportContext, x: Value, y: Value, reduction: int = 1) -> Value:
    x, y = _float_operands(c, x, y)
    return _reduce_loss(c, c.op("abs", c.op("sub", x, y)), reduction)


@handles(aten.smooth_l1_loss)
def _smooth_l1_loss(c: ImportContext, x: Value, y: Value, reduction: int = 1,
                    beta: float = 1.0) -> Value:
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (l1 for beta = 0)."""
    x, y = _float_operands(c, x, y)
    d = c.op("abs", c.op("sub", x, y))
    if beta == 0:
        return _reduce_loss(c, d, reduction)
    quad = c.op("div", c.op("mul", c.op("mul", d, d), c.tensor(0.5, d)), c.tensor(beta, d))
    lin = c.op("sub", d, c.tensor(0.5 * beta, d))
    return _reduce_loss(c, c.op("where", c.op("lt", d, c.tensor(beta, d)), quad, lin), reduction)


@handles(aten.huber_loss)
def _huber_loss(c: ImportContext, x: Value, y: Value, reduction: int = 1,
                delta: float = 1.0) -> Value:
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere."""
    x, y = _float_operands(c, x, y)
    d = c.op("abs", c.op("sub", x, y))
    quad = c.op("mul", c.op("mul", d, d), c.tensor(0.5, d))
    lin = c.op("mul", c.op("sub", d, c.tensor(0.5 * delta, d)), c.tensor(delta, d))
    return _reduce_loss(c, c.op("where", c.op("lt", d, c.tensor(delta, d)), quad, lin),
                        reduction)


# ---- stacking ------------------------------------------------------------------------------------
def _at_least(c: ImportContext, x: Value, rank: int) -> Value:
    """atleast_1d/2d/3d: (n,) -> (1, n) -> (1, n, 1), 0-d -> all ones."""
    if x.type.rank >= rank:
        return x
    s = tuple(x.shape)
    shape = {0: (1,) * rank, 1: (1, *s, 1)[:rank] if rank == 3 else (1, *s),
             2: (*s, 1)}[x.type.rank]
    return c.op("reshape", x, shape=shape)


@handles(aten.hstack)
def _hstack(c: ImportContext, xs: Any) -> Value:
    xs = [_at_least(c, x, 1) for x in xs]
    return _cat(c, xs, 0 if xs[0].type.rank == 1 else 1)


@handles(aten.vstack, aten.row_stack)
def _vstack(c: ImportContext, xs: Any) -> Value:
    return _cat(c, [_at_least(c, x, 2) for x in xs], 0)


@handles(aten.dstack)
def _dstack(c: ImportContext, xs: Any) -> Value:
    return _cat(c, [_at_least(c, x, 3) for x in xs], 2)


@handles(aten.column_stack)
def _column_stack(c: ImportContext, xs: Any) -> Value:
    cols = [c.op("reshape", x, shape=(x.type.numel, 1)) if x.type.rank <= 1 else x for x in xs]
    return _cat(c, cols, 1)


@handles(aten.diagflat)
def _diagflat(c: ImportContext, x: Value, offset: int = 0) -> Value:
    flat = x if x.type.rank == 1 else c.op("reshape", x, shape=(x.type.numel,))
    return _diag(c, flat, offset)


# ---- more elementwise -------------------------------------------------------------------------
@handles(aten.float_power)
def _float_power(c: ImportContext, a: Any, b: Any) -> Value:
    """pow in float64 (complex inputs are not lowered)."""
    vals = [v for v in (a, b) if isinstance(v, Value)]
    if any(v.dtype.is_complex for v in vals):
        raise Unsupported("float_power of complex tensors")
    av, bv = (c.op("cast", v, dtype=torch.float64) if isinstance(v, Value) and
              v.dtype != torch.float64 else v for v in (a, b))
    like = av if isinstance(av, Value) else bv
    return c.op("pow", c.tensor(av if isinstance(av, Value) else float(av), like),
                c.tensor(bv if isinstance(bv, Value) else float(bv), like))


@handles(aten.isclose)
def _isclose(c: ImportContext, a: Value, b: Value, rtol: float = 1e-5, atol: float = 1e-8,
             equal_nan: bool = False) -> Value:
    """a == b, or both finite and |a - b| <= atol + rtol |b| (NaNs equal if equal_nan)."""
    if not (a.dtype.is_floating_point and a.dtype == b.dtype):
        raise Unsupported("isclose of non-float or mixed-dtype tensors")
    close = c.op("le", c.op("abs", c.op("sub", a, b)),
                 c.op("add", c.tensor(float(atol), a),
                      c.op("mul", c.tensor(float(rtol), a), c.op("abs", b))))
    finite = c.op("logical_and", _isfinite(c, a), _isfinite(c, b))
    out = c.op("logical_or", c.op("eq", a, b), c.op("logical_and", finite, close))
    if equal_nan:
        out = c.op("logical_or", out, c.op("logical_and", c.op("isnan", a), c.op("isnan", b)))
    return out


@handles(aten.angle)
def _angle(c: ImportContext, x: Value) -> Value:
    """pi for negative reals, 0 otherwise, NaN for NaN."""
    if x.dtype.is_complex:
        raise Unsupported("angle of a complex tensor")
    if not x.dtype.is_floating_point:
        x = c.op("cast", x, dtype=torch.get_default_dtype())
    y = c.op("where", c.op("lt", x, c.tensor(0.0, x)), c.tensor(math.pi, x), c.tensor(0.0, x))
    return c.op("where", c.op("isnan", x), x, y)


@handles(aten.isreal)
def _isreal(c: ImportContext, x: Value) -> Value:
    if x.dtype.is_complex:
        raise Unsupported("isreal of a complex tensor")
    return c.filled(tuple(x.shape), True, torch.bool)


@handles(aten.prelu, aten._prelu_kernel)
def _prelu(c: ImportContext, x: Value, w: Value) -> Value:
    """x where x > 0, else w x, w along the channel dim (1)."""
    if w.type.numel != 1 and x.type.rank >= 2:
        w = c.op("reshape", w, shape=(w.type.numel,) + (1,) * (x.type.rank - 2))
    return c.op("where", c.op("gt", x, c.tensor(0.0, x)), x, c.op("mul", w, x))


@handles(aten.feature_alpha_dropout)
def _feature_alpha_dropout(c: ImportContext, x: Value, p: float, train: bool) -> Value:
    return _dropout(c, x, p, train)


@handles(aten.cross, aten.linalg_cross)
def _cross(c: ImportContext, a: Value, b: Value, dim: Any = None) -> Value:
    """a[y]b[z] - a[z]b[y], ... along the size-3 dim, by constant index."""
    if a.shape != b.shape:
        raise Unsupported("cross of tensors that broadcast")
    if dim is None:
        dim = next((i for i, s in enumerate(a.shape) if s == 3), None)
        if dim is None:
            raise Unsupported("cross without a size-3 dim")
    d = dim % a.type.rank
    yzx, zxy = [1, 2, 0], [2, 0, 1]
    return c.op("sub", c.op("mul", _take(c, a, d, yzx), _take(c, b, d, zxy)),
                c.op("mul", _take(c, a, d, zxy), _take(c, b, d, yzx)))


@handles(aten.nanmean)
def _nanmean(c: ImportContext, x: Value, dim: Any = None, keepdim: bool = False, *,
             dtype: Any = None) -> Value:
    """sum of the non-NaN entries / their count."""
    if dtype is not None or not x.dtype.is_floating_point:
        raise Unsupported("nanmean with a dtype or of a non-float tensor")
    nan = c.op("isnan", x)
    dims = _dims(x, dim)
    total = c.op("sum", c.op("where", nan, c.tensor(0.0, x), x), dims=dims, keepdim=keepdim)
    count = c.op("sum", c.op("cast", c.op("logical_not", nan), dtype=x.dtype), dims=dims,
                 keepdim=keepdim)
    return c.op("div", total, count)


@handles(aten.addbmm)
def _addbmm(c: ImportContext, x: Value, a: Value, b: Value, *, beta: Any = 1,
            alpha: Any = 1) -> Value:
    """beta x + alpha sum_b a[b] @ b[b]."""
    prod = c.op("sum", c.op("matmul", a, b), dims=(0,))
    if alpha != 1:
        prod = c.op("mul", prod, c.tensor(alpha, prod))
    if beta == 0:
        return prod if prod.shape == x.shape else _broadcast_to(c, prod, tuple(x.shape))
    base = x if beta == 1 else c.op("mul", x, c.tensor(beta, x))
    return c.op("add", base, prod)


@handles(aten.margin_ranking_loss)
def _margin_ranking_loss(c: ImportContext, x1: Value, x2: Value, y: Value, margin: float = 0.0,
                         reduction: int = 1) -> Value:
    """max(0, -y (x1 - x2) + margin)."""
    x1, x2 = _float_operands(c, x1, x2)
    loss = c.op("add", c.op("mul", c.op("neg", y), c.op("sub", x1, x2)),
                c.tensor(float(margin), x1))
    return _reduce_loss(c, c.op("maximum", loss, c.tensor(0.0, loss)), reduction)


@handles(aten.nll_loss_nd, aten.nll_loss)
def _nll_loss(c: ImportContext, x: Value, target: Value, weight: Any = None,
              reduction: int = 1, ignore_index: int = -100) -> Any:
    """-x[n, target[n], ...], zero where target is ignore_index; the mean divides by the
    number of entries not ignored (no class weights)."""
    if weight is not None:
        raise Unsupported("nll_loss with class weights")
    if not x.dtype.is_floating_point or x.type.rank == 0 or not x.type.is_static:
        raise Unsupported("nll_loss of a non-float, 0-d or symbolic tensor")
    cd = 1 if x.type.rank >= 2 else 0
    keep = c.op("ne", target, c.tensor(ignore_index, target))
    safe = c.op("where", keep, target, c.tensor(0, target))
    picked = c.op("gather", x, c.op("reshape", safe, shape=(
        *target.shape[:cd], 1, *target.shape[cd:])), dim=cd)
    picked = c.op("reshape", picked, shape=tuple(target.shape))
    loss = c.op("where", keep, c.op("neg", picked), c.tensor(0.0, picked))
    if reduction == 0:
        out = loss
    else:
        out = c.op("sum", loss, dims=_dims(loss, None))
        if reduction == 1:
            out = c.op("div", out, c.op("sum", c.op("cast", keep, dtype=x.dtype),
                                        dims=_dims(keep, None)))
    return out


@handles(aten.cross_entropy_loss)
def _cross_entropy(c: ImportContext, x: Value, target: Value, weight: Any = None,
                   reduction: int = 1, ignore_index: int = -100,
                   label_smoothing: float = 0.0) -> Value:
    """nll_loss of log_softmax over the class dim (integer targets, no smoothing)."""
    if label_smoothing or _is_float(target):
        raise Unsupported("cross_entropy with label smoothing or class probabilities")
    cd = 1 if x.type.rank >= 2 else 0
    return _nll_loss(c, c.op("log_softmax", x, dim=cd), target, weight, reduction, ignore_index)


def _is_float(v: Value) -> bool:
    return v.dtype.is_floating_point


@handles(aten.instance_norm)
def _instance_norm(c: ImportContext, x: Value, weight: Any, bias: Any, mean: Any, var: Any,
                   use_input_stats: bool, momentum: float, eps: float,
                   cudnn: bool = False) -> Value:
    """Per (sample, channel) normalization over the spatial dims, then the channel affine."""
    if not use_input_stats:
        if mean is None:
            raise Unsupported("instance_norm without input statistics or running ones")
        return c.op("batch_norm", x, mean, var, weight, bias, eps=float(eps))
    if mean is not None:
        raise Unsupported("instance_norm updating running statistics (call model.eval())")
    dims = tuple(range(2, x.type.rank))
    mu, rstd = _mean_rstd(c, x, dims, eps)
    y = c.op("mul", c.op("sub", x, mu), rstd)
    shape = (x.shape[1],) + (1,) * (x.type.rank - 2)
    if weight is not None:
        y = c.op("mul", y, c.op("reshape", weight, shape=shape))
    if bias is not None:
        y = c.op("add", y, c.op("reshape", bias, shape=shape))
    return y


@handles(aten.index_reduce)
def _index_reduce(c: ImportContext, x: Value, dim: int, index: Value, src: Value, reduce: str,
                  *, include_self: bool = True) -> Value:
    """scatter_reduce with the 1-d index spread over src's shape along dim."""
    if reduce == "mean" or x.type.rank == 0:
        raise Unsupported(f"index_reduce with reduce={reduce!r} or of a 0-d tensor")
    d = dim % x.type.rank
    shape = tuple(index.shape[0] if i == d else 1 for i in range(src.type.rank))
    full = _broadcast_to(c, c.op("reshape", index, shape=shape), tuple(src.shape))
    return _scatter_reduce(c, x, d, full, src, reduce, include_self=include_self)


# ---- products and norms through einsum / reductions ---------------------------------------------
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _contract(c: ImportContext, a: Value, b: Value, dims_a: list[int], dims_b: list[int]
              ) -> Value:
    """tensordot: sum over dims_a of a against dims_b of b, the rest of a then of b."""
    la = list(_LETTERS[:a.type.rank])
    lb = list(_LETTERS[a.type.rank:a.type.rank + b.type.rank])
    if len(la) + len(lb) > 26:
        raise Unsupported("tensordot of more than 26 dims")
    for i, j in zip(dims_a, dims_b, strict=True):
        lb[j % b.type.rank] = la[i % a.type.rank]
    shared = set(la) & set(lb)
    out = [ch for ch in la if ch not in shared] + [ch for ch in lb if ch not in shared]
    return _einsum(c, f"{''.join(la)},{''.join(lb)}->{''.join(out)}", [a, b])


@handles(aten.tensordot)
def _tensordot(c: ImportContext, a: Value, b: Value, dims_a: Any, dims_b: Any) -> Value:
    return _contract(c, a, b, list(dims_a), list(dims_b))


@handles(aten.inner)
def _inner(c: ImportContext, a: Value, b: Value) -> Value:
    if a.type.rank == 0 or b.type.rank == 0:
        return c.op("mul", a, b)
    return _contract(c, a, b, [-1], [-1])


@handles(aten.linalg_vecdot)
def _vecdot(c: ImportContext, x: Value, y: Value, *, dim: int = -1) -> Value:
    if x.dtype.is_complex or y.dtype.is_complex:
        raise Unsupported("vecdot of complex tensors (conjugates x)")
    p = c.op("mul", x, y)
    return c.op("sum", p, dims=(dim % max(p.type.rank, 1),))


@handles(aten.kron)
def _kron(c: ImportContext, a: Value, b: Value) -> Value:
    """a's dims interleaved with b's, multiplied, merged pairwise."""
    r = max(a.type.rank, b.type.rank)
    sa = (1,) * (r - a.type.rank) + tuple(a.shape)
    sb = (1,) * (r - b.type.rank) + tuple(b.shape)
    av = c.op("reshape", a, shape=tuple(v for n in sa for v in (n, 1)))
    bv = c.op("reshape", b, shape=tuple(v for n in sb for v in (1, n)))
    return c.op("reshape", c.op("mul", av, bv), shape=tuple(m * n for m, n in zip(
        sa, sb, strict=True)))


@handles(aten.linalg_multi_dot)
def _multi_dot(c: ImportContext, xs: Any) -> Value:
    xs = list(xs)
    y = xs[0]
    for x in xs[1:]:
        y = c.op("matmul", y, x)
    return y


@handles(aten.linalg_matrix_power, aten.matrix_power)
def _matrix_power(c: ImportContext, x: Value, n: int) -> Value:
    """Repeated squaring (n >= 0; n = 0 is the identity)."""
    if not isinstance(n, int) or n < 0:
        raise Unsupported("matrix_power with a negative or symbolic exponent (an inverse)")
    if n == 0:
        eye = torch.eye(x.shape[-1], dtype=x.dtype)
        return _broadcast_to(c, c.rw.const(eye, "eye"), tuple(x.shape))
    result, base = None, x
    while n:
        if n & 1:
            result = base if result is None else c.op("matmul", result, base)
        n >>= 1
        if n:
            base = c.op("matmul", base, base)
    return result


@handles(aten.bilinear)
def _bilinear(c: ImportContext, x1: Value, x2: Value, w: Value, b: Any = None) -> Value:
    """x1 W x2 per output feature, plus bias."""
    y = _einsum(c, "...i,oij,...j->...o", [x1, w, x2])
    return y if b is None else c.op("add", y, b)


def _vector_norm(c: ImportContext, x: Value, p: Any, dims: tuple[int, ...], keepdim: bool
                 ) -> Value:
    """The p-norm over dims (p = 0: the count of nonzeros)."""
    if x.dtype.is_complex or not x.dtype.is_floating_point:
        raise Unsupported("norm of a complex or integer tensor")
    p = float(p)
    a = c.op("abs", x)
    if p == math.inf:
        return c.op("amax", a, dims=dims, keepdim=keepdim)
    if p == -math.inf:
        return c.op("amin", a, dims=dims, keepdim=keepdim)
    if p == 0:
        nz = c.op("cast", c.op("ne", x, c.tensor(0.0, x)), dtype=x.dtype)
        return c.op("sum", nz, dims=dims, keepdim=keepdim)
    if p == 1:
        return c.op("sum", a, dims=dims, keepdim=keepdim)
    if p == 2:
        return c.op("sqrt", c.op("sum", c.op("mul", x, x), dims=dims, keepdim=keepdim))
    s = c.op("sum", c.op("pow", a, c.tensor(p, a)), dims=dims, keepdim=keepdim)
    return c.op("pow", s, c.tensor(1.0 / p, s))


@handles(aten.linalg_vector_norm)
def _linalg_vector_norm(c: ImportContext, x: Value, ord: Any = 2, dim: Any = None,  # noqa: A002
                        keepdim: bool = False, *, dtype: Any = None) -> Value:
    if dtype is not None and dtype != x.dtype:
        raise Unsupported("vector_norm with a dtype")
    return _vector_norm(c, x, ord, _dims(x, dim), bool(keepdim))


@handles(aten.linalg_norm.default)
def _linalg_norm(c: ImportContext, x: Value, ord: Any = None, dim: Any = None,  # noqa: A002
                 keepdim: bool = False, *, dtype: Any = None) -> Value:
    """Vector norms, and the Frobenius matrix norm; other matrix norms need an SVD."""
    if dtype is not None and dtype != x.dtype:
        raise Unsupported("linalg.norm with a dtype")
    dims = None if dim is None else ((dim,) if isinstance(dim, int) else tuple(dim))
    if ord is None or ord == "fro":
        if ord == "fro" and (dims is None and x.type.rank != 2 or dims and len(dims) != 2):
            raise Unsupported("Frobenius norm of a tensor that is not a matrix")
        return _vector_norm(c, x, 2, _dims(x, dims), bool(keepdim))
    if isinstance(ord, str):
        raise Unsupported(f"linalg.norm with ord={ord!r}")
    if dims is None and x.type.rank == 1 or dims is not None and len(dims) == 1:
        return _vector_norm(c, x, ord, _dims(x, dims), bool(keepdim))
    raise Unsupported(f"matrix norm with ord={ord!r}")


@handles(aten.linalg_matrix_norm.str_ord)
def _matrix_norm(c: ImportContext, x: Value, ord: str = "fro", dim: Any = (-2, -1),  # noqa: A002
                 keepdim: bool = False, *, dtype: Any = None) -> Value:
    if ord != "fro" or dtype is not None and dtype != x.dtype:
        raise Unsupported(f"matrix norm with ord={ord!r} (an SVD) or a dtype")
    return _vector_norm(c, x, 2, _dims(x, dim), bool(keepdim))


@handles(aten.cosine_similarity)
def _cosine_similarity(c: ImportContext, x1: Value, x2: Value, dim: int = 1,
                       eps: float = 1e-8) -> Value:
    """sum((x1 / max(|x1|, eps)) * (x2 / max(|x2|, eps))) along dim, as ATen computes it."""
    x1, x2 = _float_operands(c, x1, x2)
    if not (x1.type.is_static and x2.type.is_static):
        raise Unsupported("cosine_similarity of symbolic shapes")
    shape = tuple(torch.broadcast_shapes(tuple(x1.shape), tuple(x2.shape)))
    x1, x2 = _broadcast_to(c, x1, shape), _broadcast_to(c, x2, shape)
    d = dim % max(len(shape), 1)
    n1 = c.op("clamp", _vector_norm(c, x1, 2, (d,), True), min=float(eps))
    n2 = c.op("clamp", _vector_norm(c, x2, 2, (d,), True), min=float(eps))
    return c.op("sum", c.op("mul", c.op("div", x1, n1), c.op("div", x2, n2)), dims=(d,))


@handles(aten.cosine_embedding_loss)
def _cosine_embedding_loss(c: ImportContext, x1: Value, x2: Value, y: Value,
                           margin: float = 0.0, reduction: int = 1) -> Value:
    """1 - cos for y = 1, max(0, cos - margin) for y = -1 (cos with ATen's 1e-12 guards)."""
    x1, x2 = _float_operands(c, x1, x2)
    d = 1 if x1.type.rank == 2 else 0
    dot = c.op("sum", c.op("mul", x1, x2), dims=(d,))
    m1 = c.op("add", c.op("sum", c.op("mul", x1, x1), dims=(d,)), c.tensor(1e-12, x1))
    m2 = c.op("add", c.op("sum", c.op("mul", x2, x2), dims=(d,)), c.tensor(1e-12, x2))
    cos = c.op("div", dot, c.op("sqrt", c.op("mul", m1, m2)))
    zero = c.tensor(0.0, cos)
    pos = c.op("where", c.op("eq", y, c.tensor(1, y)), c.op("sub", c.tensor(1.0, cos), cos), zero)
    neg = c.op("where", c.op("eq", y, c.tensor(-1, y)),
                c.op("clamp", c.op("sub", cos, c.tensor(float(margin), cos)), min=0.0), zero)
    return _reduce_loss(c, c.op("add", pos, neg), reduction)


@handles(aten.hinge_embedding_loss)
def _hinge_embedding_loss(c: ImportContext, x: Value, y: Value, margin: float = 1.0,
                          reduction: int = 1) -> Value:
    """max(0, margin - x) where y != 1, plus x where y != -1."""
    if not x.dtype.is_floating_point:
        raise Unsupported("hinge_embedding_loss of a non-float tensor")
    zero = c.tensor(0.0, x)
    clamp = c.op("clamp", c.op("sub", c.tensor(float(margin), x), x), min=0.0)
    out = c.op("add", c.op("where", c.op("ne", y, c.tensor(1, y)), clamp, zero),
               c.op("where", c.op("ne", y, c.tensor(-1, y)), x, zero))
    return _reduce_loss(c, out, reduction)


@handles(aten.poisson_nll_loss)
def _poisson_nll_loss(c: ImportContext, x: Value, t: Value, log_input: bool, full: bool,
                      eps: float, reduction: int) -> Value:
    """exp(x) - t x (log input) or x - t log(x + eps), plus Stirling's term for t > 1."""
    x, t = _float_operands(c, x, t)
    if log_input:
        loss = c.op("sub", c.op("exp", x), c.op("mul", t, x))
    else:
        loss = c.op("sub", x, c.op("mul", t, c.op("log", c.op("add", x, c.tensor(float(eps), x)))))
    if full:
        st = c.op("add", c.op("sub", c.op("mul", t, c.op("log", t)), t),
                  c.op("mul", c.tensor(0.5, t), c.op("log", c.op("mul", c.tensor(
                      2 * math.pi, t), t))))
        loss = c.op("add", loss, c.op("where", c.op("le", t, c.tensor(1.0, t)),
                                      c.tensor(0.0, t), st))
    return _reduce_loss(c, loss, reduction)


@handles(aten.kl_div)
def _kl_div(c: ImportContext, x: Value, t: Value, reduction: int = 1, *,
            log_target: bool = False) -> Value:
    """exp(t) (t - x) for a log target, else xlogy(t, t) - t x."""
    x, t = _float_operands(c, x, t)
    if log_target:
        loss = c.op("mul", c.op("exp", t), c.op("sub", t, x))
    else:
        xlogy = c.op("where", c.op("eq", t, c.tensor(0.0, t)), c.tensor(0.0, t),
                     c.op("mul", t, c.op("log", t)))
        loss = c.op("sub", xlogy, c.op("mul", t, x))
    return _reduce_loss(c, loss, reduction)


def _pairwise_distance(c: ImportContext, a: Value, b: Value, p: float, eps: float) -> Value:
    d = c.op("add", c.op("sub", a, b), c.tensor(float(eps), a))
    return _vector_norm(c, d, p, (max(a.type.rank, b.type.rank) - 1,), False)


@handles(aten.triplet_margin_loss)
def _triplet_margin_loss(c: ImportContext, a: Value, pos: Value, neg: Value,
                         margin: float = 1.0, p: float = 2, eps: float = 1e-6,
                         swap: bool = False, reduction: int = 1) -> Value:
    """max(0, margin + d(a, pos) - d(a, neg)), d the pairwise p-distance."""
    if min(a.type.rank, pos.type.rank, neg.type.rank) == 0:
        raise Unsupported("triplet_margin_loss of 0-d tensors")
    dp = _pairwise_distance(c, a, pos, p, eps)
    dn = _pairwise_distance(c, a, neg, p, eps)
    if swap:
        dn = c.op("minimum", dn, _pairwise_distance(c, pos, neg, p, eps))
    out = c.op("clamp", c.op("sub", c.op("add", dp, c.tensor(float(margin), dp)), dn), min=0.0)
    return _reduce_loss(c, out, reduction)


def _trapezoid_parts(c: ImportContext, y: Value, x: Value | None, dx: Any, dim: int
                     ) -> tuple[Value, Any, int]:
    """(y[1:] + y[:-1] along dim, the spacing, dim)."""
    if y.type.rank == 0 or not y.type.is_static:
        raise Unsupported("trapezoid of a 0-d or symbolic tensor")
    d = dim % y.type.rank
    n = y.shape[d]
    pair = c.op("add", c.op("slice", y, dim=d, start=1, end=n),
                c.op("slice", y, dim=d, start=0, end=max(n - 1, 0)))
    if x is None:
        return pair, dx, d
    if x.type.rank == 1 and y.type.rank > 1:
        x = c.op("reshape", x, shape=tuple(x.shape[0] if i == d else 1
                                           for i in range(y.type.rank)))
    return pair, _diff(c, x, 1, d if x.type.rank == y.type.rank else -1), d


@handles(aten.trapezoid.x, aten.trapz.x)
def _trapezoid(c: ImportContext, y: Value, x: Value, *, dim: int = -1) -> Value:
    pair, spacing, d = _trapezoid_parts(c, y, x, None, dim)
    return c.op("div", c.op("sum", c.op("mul", spacing, pair), dims=(d,)), c.tensor(2.0, pair))


@handles(aten.trapezoid.dx, aten.trapz.dx)
def _trapezoid_dx(c: ImportContext, y: Value, *, dx: Any = 1, dim: int = -1) -> Value:
    pair, spacing, d = _trapezoid_parts(c, y, None, dx, dim)
    return c.op("mul", c.op("sum", pair, dims=(d,)), c.tensor(float(spacing) / 2, pair))


@handles(aten.cumulative_trapezoid.x)
def _cumulative_trapezoid(c: ImportContext, y: Value, x: Value, *, dim: int = -1) -> Value:
    pair, spacing, d = _trapezoid_parts(c, y, x, None, dim)
    return c.op("div", c.op("cumsum", c.op("mul", spacing, pair), dim=d), c.tensor(2.0, pair))


# ---- scans, quantiles, resampling ---------------------------------------------------------------
_LOGCUMSUMEXP_MAX = 2048
"""Longest dim logcumsumexp lowers (it materializes an n x n masked copy)."""


@handles(aten.logcumsumexp)
def _logcumsumexp(c: ImportContext, x: Value, dim: int) -> Value:
    """log(sum_{j <= i} exp(x_j)) as a stable logsumexp over a lower-triangular masked copy
    (entries j > i set to -inf): exact where a running sum of exps would underflow."""
    if x.type.rank == 0:
        return x
    if not x.dtype.is_floating_point or not x.type.is_static:
        raise Unsupported("logcumsumexp of a non-float or symbolic tensor")
    d = dim % x.type.rank
    n = x.shape[d]
    if n > _LOGCUMSUMEXP_MAX:
        raise Unsupported(f"logcumsumexp along a dim longer than {_LOGCUMSUMEXP_MAX}")
    rest = [i for i in range(x.type.rank) if i != d]
    xt = _permute(c, x, (*rest, d))  # (..., n): j last
    lead = tuple(xt.shape[:-1])
    wide = c.op("expand", c.op("reshape", xt, shape=(*lead, 1, n)), shape=(*lead, n, n))
    keep = c.rw.const(torch.ones(n, n, dtype=torch.bool).tril(), "tri")
    masked = c.op("where", keep, wide, c.tensor(float("-inf"), wide))
    m = c.op("amax", masked, dims=(len(lead) + 1,), keepdim=True)
    m = c.op("where", c.op("isinf", m), c.tensor(0.0, m), m)
    s = c.op("sum", c.op("exp", c.op("sub", masked, m)), dims=(len(lead) + 1,), keepdim=True)
    y = c.op("reshape", c.op("add", c.op("log", s), m), shape=(*lead, n))  # (..., n): i last
    inv = [0] * x.type.rank
    for pos, src in enumerate((*rest, d)):
        inv[src] = pos
    return _permute(c, y, tuple(inv))


def _lerp(c: ImportContext, a: Value, b: Value, w: Value) -> Value:
    """torch.lerp's formula: a + w (b - a) for w < 1/2, b - (b - a)(1 - w) beyond."""
    diff = c.op("sub", b, a)
    lo = c.op("add", a, c.op("mul", w, diff))
    hi = c.op("sub", b, c.op("mul", diff, c.op("sub", c.tensor(1.0, w), w)))
    return c.op("where", c.op("lt", w, c.tensor(0.5, w)), lo, hi)


@handles(aten.quantile.scalar)
def _quantile(c: ImportContext, x: Value, q: float, dim: Any = None, keepdim: bool = False, *,
              interpolation: str = "linear") -> Value:
    return _quantile_of(c, x, q, dim, keepdim, interpolation, nan_aware=False)


@handles(aten.nanquantile.scalar)
def _nanquantile(c: ImportContext, x: Value, q: float, dim: Any = None, keepdim: bool = False,
                 *, interpolation: str = "linear") -> Value:
    return _quantile_of(c, x, q, dim, keepdim, interpolation, nan_aware=True)


def _quantile_of(c: ImportContext, x: Value, q: float, dim: Any, keepdim: bool,
                 interpolation: str, *, nan_aware: bool) -> Value:
    """Linear interpolation between the sorted entries at q (n - 1); NaN if the slice holds
    a NaN (quantile) or counting only the non-NaN entries (nanquantile, NaN if all are)."""
    if interpolation != "linear" or not x.dtype.is_floating_point or not x.type.is_static \
            or not 0 <= q <= 1:
        raise Unsupported("quantile with another interpolation, of a non-float or symbolic "
                          "tensor")
    if x.type.rank == 0:
        return x
    if dim is None:
        v, d = c.op("reshape", x, shape=(x.type.numel,)), 0
    else:
        v, d = x, dim % x.type.rank
    n = v.shape[d]
    if n == 0:
        raise Unsupported("quantile of an empty dim")
    srt = _sort_along(c, v, d, False)[0]  # NaN last
    if not nan_aware:
        rank = q * (n - 1)
        lo, hi = math.floor(rank), math.ceil(rank)
        a, b = _take(c, srt, d, [lo]), _take(c, srt, d, [hi])
        y = _lerp(c, a, b, c.tensor(float(rank - lo), a))
        last = _take(c, srt, d, [n - 1])
        y = c.op("where", c.op("isnan", last), last, y)
    else:
        count = c.op("sum", c.op("cast", c.op("logical_not", c.op("isnan", v)), dtype=x.dtype),
                     dims=(d,), keepdim=True)
        rank = c.op("mul", c.tensor(float(q), count), c.op("sub", count, c.tensor(1.0, count)))
        rank = c.op("maximum", rank, c.tensor(0.0, rank))
        lo_f = c.op("floor", rank)
        hi_f = c.op("minimum", c.op("ceil", rank), c.op("maximum", c.op(
            "sub", count, c.tensor(1.0, count)), c.tensor(0.0, count)))
        a = c.op("gather", srt, c.op("cast", lo_f, dtype=torch.int64), dim=d)
        b = c.op("gather", srt, c.op("cast", hi_f, dtype=torch.int64), dim=d)
        y = _lerp(c, a, b, c.op("sub", rank, lo_f))
        y = c.op("where", c.op("eq", count, c.tensor(0.0, count)), c.tensor(float("nan"), y), y)
    if keepdim:
        return y if dim is not None else c.op("reshape", y, shape=(1,) * x.type.rank)
    return c.op("reshape", y, shape=tuple(s for i, s in enumerate(v.shape) if i != d))


@handles(aten.upsample_linear1d.vec, aten.upsample_linear1d.default)
def _upsample_linear1d(c: ImportContext, x: Value, output_size: Any, align_corners: bool,
                       scales: Any = None) -> Value:
    """Each output entry a weighted pair of inputs (indices and weights computed here, in
    float32 as ATen's CPU kernel computes them)."""
    if x.type.rank != 3 or not x.dtype.is_floating_point or not x.type.is_static:
        raise Unsupported("linear upsampling of a non-3-d, non-float or symbolic tensor")
    n = x.shape[-1]
    if output_size is None:
        if scales is None:
            raise Unsupported("linear upsampling without a size or scale")
        sf = scales[0] if isinstance(scales, list | tuple) else scales
        out, scale_arg = int(math.floor(n * sf)), sf
    else:
        (out,) = _ntuple(output_size, 1)
        scale_arg = scales[0] if isinstance(scales, list | tuple) and scales else scales
    f32 = torch.float32
    i = torch.arange(out, dtype=f32)
    if align_corners:
        scale = torch.tensor((n - 1) / (out - 1) if out > 1 else 0.0, dtype=f32)
        src = scale * i
    else:
        scale = torch.tensor(1.0 / scale_arg if scale_arg else n / out, dtype=f32)
        src = torch.clamp(scale * (i + 0.5) - 0.5, min=0.0)
    lo = src.to(torch.int64).clamp(max=n - 1)
    hi = torch.where(lo < n - 1, lo + 1, lo)
    w1 = (src - lo.to(f32)).to(x.dtype)
    a, b = _take(c, x, 2, lo), _take(c, x, 2, hi)
    w1v = c.rw.const(w1, "lambda")
    w0v = c.rw.const((1 - w1), "lambda")
    return c.op("add", c.op("mul", a, w0v), c.op("mul", b, w1v))


_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDING = {0: "zeros", 1: "border", 2: "reflection"}


@handles(aten.grid_sampler, aten.grid_sampler_2d)
def _grid_sampler(c: ImportContext, x: Value, grid: Value, mode: int, padding: int,
                  align_corners: bool) -> Value:
    if x.type.rank != 4 or not x.dtype.is_floating_point or grid.dtype != x.dtype:
        raise Unsupported("grid_sample of a non-4-d or non-float input")
    return c.op("grid_sample", x, grid, mode=_GRID_MODES[mode], padding_mode=_GRID_PADDING[padding],
                align_corners=bool(align_corners))


from accel.frontend import aten_select  # noqa: E402 - its handlers use this module's helpers
