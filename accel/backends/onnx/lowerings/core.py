"""ONNX lowerings of the core IR ops: pointwise, reductions and norms, nn, shape."""

from __future__ import annotations

import math

import numpy as np
import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.registry import onnx_lowering
from accel.errors import ExportError
from accel.ir.graph import Node
from accel.ir.shapes import is_symbolic

# ---- pointwise --------------------------------------------------------------------------------
_UNARY = {
    "neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs",
    "reciprocal": "Reciprocal", "sin": "Sin", "cos": "Cos", "tanh": "Tanh", "erf": "Erf",
    "sigmoid": "Sigmoid", "hardswish": "HardSwish", "logical_not": "Not", "tan": "Tan",
    "asin": "Asin", "acos": "Acos", "atan": "Atan", "sinh": "Sinh", "cosh": "Cosh",
    "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
}
"""IR ops that are one ONNX op (on the output dtype: an integer input of a float op is cast)."""
_BINARY = {
    "add": "Add", "sub": "Sub", "mul": "Mul", "pow": "Pow", "maximum": "Max", "minimum": "Min",
    "eq": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater",
    "ge": "GreaterOrEqual", "logical_and": "And", "logical_or": "Or",
}
_COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}
_LOGICAL = {"logical_and", "logical_or"}


def cast_to(b: OnnxBuilder, name: str, src: torch.dtype, dst: torch.dtype) -> str:
    """``name`` cast to ``dst`` (no node when the dtypes already agree)."""
    return name if src == dst else b.add("Cast", [name], to=b.onnx_dtype(dst))


def _common_dtype(node: Node) -> torch.dtype:
    metas = [torch.empty([1] * v.type.rank, dtype=v.dtype, device="meta")
             for v in node.inputs if v]  # promotion depends on ranks and dtypes, not sizes
    return torch.result_type(*metas) if len(metas) == 2 else metas[0].dtype


def _operands(b: OnnxBuilder, node: Node, inputs: list[str], dtype: torch.dtype) -> list[str]:
    return [cast_to(b, n, v.dtype, dtype) for n, v in zip(inputs, node.inputs, strict=True)]


def _unary(onnx_op: str):  # noqa: ANN202
    def lower(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
        return [b.add(onnx_op, [_as_output(b, node, inputs[0])])]
    return lower


def _as_output(b: OnnxBuilder, node: Node, x: str) -> str:
    """Input ``x`` cast to the output dtype (``exp`` of an integer tensor is float)."""
    return cast_to(b, x, node.inputs[0].dtype, node.outputs[0].dtype)


def _binary(op: str, onnx_op: str):  # noqa: ANN202
    def lower(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
        if op in _LOGICAL:
            dtype = torch.bool
        elif op in _COMPARE:
            dtype = _common_dtype(node)
        else:
            dtype = node.outputs[0].dtype
        return [b.add(onnx_op, _operands(b, node, inputs, dtype))]
    return lower


for _op, _onnx in _UNARY.items():
    if _op != "logical_not":
        onnx_lowering(_op)(_unary(_onnx))


@onnx_lowering("logical_not")
def lower_logical_not(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Not of the input as bool (``logical_not`` of a number is ``x == 0``)."""
    return [b.add("Not", [cast_to(b, inputs[0], node.inputs[0].dtype, torch.bool)])]
for _op, _onnx in _BINARY.items():
    onnx_lowering(_op)(_binary(_op, _onnx))


@onnx_lowering("ne")
def lower_ne(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """a != b as Not(Equal)."""
    return [b.add("Not", [b.add("Equal", _operands(b, node, inputs, _common_dtype(node)))])]


@onnx_lowering("relu")
def lower_relu(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Relu; Max(x, 0) for integers (onnxruntime's CPU Relu has no integer kernels)."""
    dt = node.inputs[0].dtype
    if dt.is_floating_point:
        return [b.add("Relu", inputs)]
    return [b.add("Max", [inputs[0], b.scalar(0, dt, "zero")])]


@onnx_lowering("floor")
def lower_floor(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Floor; the identity on integers (ONNX Floor is float-only)."""
    if node.inputs[0].dtype.is_floating_point:
        return [b.add("Floor", inputs)]
    return [b.add("Identity", inputs)]


@onnx_lowering("ceil")
@onnx_lowering("round")
def lower_ceil_round(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Ceil / Round (half to even, as torch); the identity on integers."""
    if not node.inputs[0].dtype.is_floating_point:
        return [b.add("Identity", inputs)]
    return [b.add({"ceil": "Ceil", "round": "Round"}[node.op], inputs)]


@onnx_lowering("sign")
def lower_sign(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Sign, with 0 for NaN (as torch)."""
    x, dt = inputs[0], node.inputs[0].dtype
    if dt == torch.bool:
        return [b.add("Identity", inputs)]
    if not dt.is_floating_point:
        return [b.add("Sign", inputs)]
    return [b.add("Where", [b.add("IsNaN", [x]), b.scalar(0.0, dt, "zero"), b.add("Sign", [x])])]


@onnx_lowering("trunc")
def lower_trunc(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Floor for x >= 0, Ceil below (ONNX has no Trunc); the identity on integers."""
    x = inputs[0]
    if not node.inputs[0].dtype.is_floating_point:
        return [b.add("Identity", inputs)]
    neg = b.add("Less", [x, b.scalar(0, node.inputs[0].dtype, "zero")])
    return [b.add("Where", [neg, b.add("Ceil", [x]), b.add("Floor", [x])])]


def _is_negative(b: OnnxBuilder, x: str, dt: torch.dtype) -> str:
    """x < 0, counting -0.0 (1/x is -inf) and -inf; not the sign bit of a NaN (ONNX cannot
    read it)."""
    zero = b.scalar(0, dt, "zero")
    if not dt.is_floating_point:
        return b.add("Less", [x, zero])
    return b.add("Or", [b.add("Less", [x, zero]),
                        b.add("Less", [b.add("Reciprocal", [x]), zero])])


@onnx_lowering("signbit")
def lower_signbit(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """x < 0 or x is -0.0 (a NaN's sign bit reads as unset)."""
    dt = node.inputs[0].dtype
    if dt == torch.bool:
        return [b.add("Equal", [inputs[0], b.add("Not", inputs)])]  # all false
    return [_is_negative(b, inputs[0], dt)]


@onnx_lowering("isnan")
def lower_isnan(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """IsNaN (all false for integers)."""
    if not node.inputs[0].dtype.is_floating_point:
        return [b.add("Not", [b.add("Equal", [inputs[0], inputs[0]])])]
    return [b.add("IsNaN", inputs)]


@onnx_lowering("isinf")
def lower_isinf(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """IsInf (all false for integers)."""
    if not node.inputs[0].dtype.is_floating_point:
        return [b.add("Not", [b.add("Equal", [inputs[0], inputs[0]])])]
    return [b.add("IsInf", inputs)]


@onnx_lowering("expm1")
def lower_expm1(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """e^x - 1, accurate near 0: with u = e^x, (u - 1) * x / log(u) (Kahan) for |x| < 1/2
    (x where u rounds to 1), u - 1 beyond (no cancellation there, and no overflow)."""
    dt = node.outputs[0].dtype
    x = _as_output(b, node, inputs[0])
    one = b.scalar(1.0, dt, "one")
    u = b.add("Exp", [x])
    um1 = b.add("Sub", [u, one])
    kahan = b.add("Div", [b.add("Mul", [um1, x]), b.add("Log", [u])])
    far = b.add("Greater", [b.add("Abs", [x]), b.scalar(0.5, dt, "half")])
    y = b.add("Where", [far, um1, kahan])
    return [b.add("Where", [b.add("Equal", [u, one]), x, y])]


@onnx_lowering("log1p")
def lower_log1p(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """log(1 + x), accurate near 0: with u = 1 + x, log(u) * x / (u - 1) (Goldberg) for
    |x| < 1/2 (x where u rounds to 1), log(u) beyond (no cancellation there)."""
    dt = node.outputs[0].dtype
    x = _as_output(b, node, inputs[0])
    one = b.scalar(1.0, dt, "one")
    u = b.add("Add", [x, one])
    logu = b.add("Log", [u])
    scaled = b.add("Div", [b.add("Mul", [logu, x]), b.add("Sub", [u, one])])
    far = b.add("Greater", [b.add("Abs", [x]), b.scalar(0.5, dt, "half")])
    y = b.add("Where", [far, logu, scaled])
    return [b.add("Where", [b.add("Equal", [u, one]), x, y])]


@onnx_lowering("exp2")
def lower_exp2(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Pow(2, x)."""
    x = _as_output(b, node, inputs[0])
    return [b.add("Pow", [b.scalar(2.0, node.outputs[0].dtype, "two"), x])]


@onnx_lowering("log2")
@onnx_lowering("log10")
def lower_log_base(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Log(x) / log(base)."""
    base = {"log2": 2.0, "log10": 10.0}[node.op]
    x = _as_output(b, node, inputs[0])
    return [b.add("Div", [b.add("Log", [x]),
                          b.scalar(math.log(base), node.outputs[0].dtype, "ln_base")])]


@onnx_lowering("erfc")
def lower_erfc(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """1 - Erf(x)."""
    x = _as_output(b, node, inputs[0])
    return [b.add("Sub", [b.scalar(1.0, node.outputs[0].dtype, "one"), b.add("Erf", [x])])]


@onnx_lowering("remainder")
def lower_remainder(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Python's a % b: Mod (fmod=0) for integers; for floats C's fmod, plus b where the
    remainder is nonzero and its sign differs from b's (as ATen computes it)."""
    dt = node.outputs[0].dtype
    a, d = _operands(b, node, inputs, dt)
    if not dt.is_floating_point:
        return [b.add("Mod", [a, d], fmod=0)]
    r = b.add("Mod", [a, d], fmod=1)
    zero = b.scalar(0.0, dt, "zero")
    fix = b.add("And", [b.add("Not", [b.add("Equal", [r, zero])]),
                        b.add("Xor", [b.add("Less", [r, zero]), b.add("Less", [d, zero])])])
    return [b.add("Where", [fix, b.add("Add", [r, d]), r])]


@onnx_lowering("fmod")
def lower_fmod(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """C's fmod: the sign of a."""
    return [b.add("Mod", _operands(b, node, inputs, node.outputs[0].dtype), fmod=1)]


@onnx_lowering("fmax")
@onnx_lowering("fmin")
def lower_fmax_fmin(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Max/Min where a NaN operand yields the other one (NaN only when both are)."""
    dt = node.outputs[0].dtype
    a, c = _operands(b, node, inputs, dt)
    m = b.add("Max" if node.op == "fmax" else "Min", [a, c])
    if not dt.is_floating_point:
        return [m]
    m = b.add("Where", [b.add("IsNaN", [c]), a, m])
    return [b.add("Where", [b.add("IsNaN", [a]), c, m])]


@onnx_lowering("hypot")
def lower_hypot(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """m * sqrt(1 + (n/m)^2) with m = max(|a|, |b|), n = min (no overflow); 0 when both are
    0, inf when either is inf (even with a NaN), NaN otherwise for a NaN."""
    dt = node.outputs[0].dtype
    if not dt.is_floating_point:
        raise ExportError(f"node {node.name} (hypot): {dt} operands; ONNX lowers float hypot")
    a, c = (b.add("Abs", [v]) for v in _operands(b, node, inputs, dt))
    nan = b.add("Or", [b.add("IsNaN", [a]), b.add("IsNaN", [c])])
    m, n = b.add("Max", [a, c]), b.add("Min", [a, c])
    zero, one = b.scalar(0.0, dt, "zero"), b.scalar(1.0, dt, "one")
    is_zero = b.add("Equal", [m, zero])
    safe_m = b.add("Where", [is_zero, one, m])
    q = b.add("Div", [n, safe_m])
    r = b.add("Mul", [m, b.add("Sqrt", [b.add("Add", [one, b.add("Mul", [q, q])])])])
    r = b.add("Where", [is_zero, zero, r])
    r = b.add("Where", [nan, b.scalar(float("nan"), dt, "nan"), r])
    inf = b.add("Or", [b.add("IsInf", [a]), b.add("IsInf", [c])])
    return [b.add("Where", [inf, b.scalar(float("inf"), dt, "inf"), r])]


@onnx_lowering("atan2")
def lower_atan2(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """atan(a / b), moved by +-pi (by the sign of a) where b is negative (-0.0 included);
    both zero: the ratio is taken as 0; both infinite: as +-1 (the quadrant's diagonal)."""
    dt = node.outputs[0].dtype
    y, x = _operands(b, node, inputs, dt)
    zero = b.scalar(0.0, dt, "zero")
    both_inf = b.add("And", [b.add("IsInf", [y]), b.add("IsInf", [x])])
    y = b.add("Where", [both_inf, b.add("Sign", [y]), y])
    x = b.add("Where", [both_inf, b.add("Sign", [x]), x])
    both_zero = b.add("And", [b.add("Equal", [y, zero]), b.add("Equal", [x, zero])])
    ratio = b.add("Where", [both_zero, zero, b.add("Div", [y, x])])
    base = b.add("Atan", [ratio])
    pi = b.scalar(math.pi, dt, "pi")
    shift = b.add("Where", [_is_negative(b, y, dt), b.add("Neg", [pi]), pi])
    return [b.add("Where", [_is_negative(b, x, dt), b.add("Add", [base, shift]), base])]


@onnx_lowering("rsqrt")
def lower_rsqrt(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """1/sqrt(x)."""
    return [b.add("Reciprocal", [b.add("Sqrt", inputs)])]


@onnx_lowering("silu")
def lower_silu(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """x * sigmoid(x)."""
    return [b.add("Mul", [inputs[0], b.add("Sigmoid", inputs)])]


@onnx_lowering("hardsigmoid")
def lower_hardsigmoid(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """relu6(x + 3) / 6 (torch's slope, not ONNX's default 0.2)."""
    return [b.add("HardSigmoid", inputs, alpha=1.0 / 6.0, beta=0.5)]


@onnx_lowering("div")
def lower_div(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """True, truncating or flooring division."""
    out_dtype = node.outputs[0].dtype
    mode = node.attrs["rounding_mode"]
    if mode is None or out_dtype.is_floating_point:
        q = b.add("Div", _operands(b, node, inputs, out_dtype))
        if mode == "floor":
            q = b.add("Floor", [q])
        elif mode == "trunc":
            q = b.add("Mul", [b.add("Sign", [q]), b.add("Floor", [b.add("Abs", [q])])])
        return [q]
    if mode == "trunc":  # integer Div truncates toward zero
        return [b.add("Div", _operands(b, node, inputs, out_dtype))]
    q = b.add("Floor", [b.add("Div", _operands(b, node, inputs, torch.float64))])
    return [b.add("Cast", [q], to=b.onnx_dtype(out_dtype))]


@onnx_lowering("gelu")
def lower_gelu(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Exact (erf) or tanh-approximated GELU, in the form onnxruntime fuses into one kernel."""
    x, dt = inputs[0], node.inputs[0].dtype
    half = b.scalar(0.5, dt, "half")
    one = b.scalar(1.0, dt, "one")
    if node.attrs["approximate"] == "tanh":
        cube = b.add("Mul", [b.add("Mul", [x, x]), x])
        inner = b.add("Add", [x, b.add("Mul", [cube, b.scalar(0.044715, dt, "c")])])
        t = b.add("Tanh", [b.add("Mul", [inner, b.scalar(math.sqrt(2 / math.pi), dt, "c")])])
        return [b.add("Mul", [b.add("Mul", [x, half]), b.add("Add", [t, one])])]
    t = b.add("Erf", [b.add("Div", [x, b.scalar(math.sqrt(2), dt, "sqrt2")])])
    return [b.add("Mul", [b.add("Mul", [x, b.add("Add", [t, one])]), half])]


@onnx_lowering("clamp")
def lower_clamp(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Clip with optional bounds."""
    dt = node.inputs[0].dtype
    lo, hi = node.attrs["min"], node.attrs["max"]
    bounds = ["" if v is None else b.scalar(v, dt, "bound") for v in (lo, hi)]
    return [b.add("Clip", [inputs[0], *bounds])]


@onnx_lowering("leaky_relu")
def lower_leaky_relu(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """LeakyRelu."""
    return [b.add("LeakyRelu", inputs, alpha=float(node.attrs["negative_slope"]))]


@onnx_lowering("cast")
def lower_cast(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Cast."""
    return [b.add("Cast", inputs, to=b.onnx_dtype(node.attrs["dtype"]))]


@onnx_lowering("where")
def lower_where(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Where, with a boolean condition and operands of the output dtype."""
    cond = cast_to(b, inputs[0], node.inputs[0].dtype, torch.bool)
    dt = node.outputs[0].dtype
    a, c = (cast_to(b, n, v.dtype, dt) for n, v in zip(inputs[1:], node.inputs[1:], strict=True))
    return [b.add("Where", [cond, a, c])]


# ---- reductions and norms ----------------------------------------------------------------------
def reduce(b: OnnxBuilder, onnx_op: str, x: str, axes: list[int], keepdims: bool) -> str:
    """A Reduce* node over ``axes`` (all dims when empty), for any opset >= 13."""
    keep = int(keepdims)
    if not axes:
        return b.add(onnx_op, [x], keepdims=keep)
    if onnx_op == "ReduceSum" or b.opset >= 18:
        return b.add(onnx_op, [x, b.const_i64(axes, "axes")], keepdims=keep)
    return b.add(onnx_op, [x], axes=list(axes), keepdims=keep)


def _dims(node: Node) -> list[int]:
    rank = node.inputs[0].type.rank
    return [d % rank for d in node.attrs["dims"]] if rank else []


def _reduction(onnx_op: str):  # noqa: ANN202
    def lower(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
        x = inputs[0]
        dtype = node.attrs.get("dtype")
        if dtype is not None:
            x = cast_to(b, x, node.inputs[0].dtype, dtype)
        elif node.outputs[0].dtype != node.inputs[0].dtype:  # e.g. sum of bool -> int64
            x = cast_to(b, x, node.inputs[0].dtype, node.outputs[0].dtype)
        if node.outputs[0].dtype == torch.bool:  # any/all: ONNX reduces no bools; via uint8
            x = cast_to(b, x, torch.bool, torch.uint8)
            y = reduce(b, onnx_op, x, _dims(node), node.attrs["keepdim"])
            return [cast_to(b, y, torch.uint8, torch.bool)]
        y = reduce(b, onnx_op, x, _dims(node), node.attrs["keepdim"])
        if onnx_op in ("ReduceMax", "ReduceMin") and node.inputs[0].dtype.is_floating_point:
            y = _nan_wins(b, x, y, node.inputs[0].dtype, lambda v: reduce(
                b, "ReduceMax", v, _dims(node), node.attrs["keepdim"]))
        return [y]
    return lower


def _nan_wins(b: OnnxBuilder, x: str, y: str, dt: torch.dtype, reduce_max) -> str:  # noqa: ANN001
    """``y`` (a max/min of ``x``) as NaN where the reduced entries hold a NaN: torch
    propagates NaN through max/min reductions, onnxruntime skips it."""
    nan = b.add("Cast", [b.add("IsNaN", [x])], to=b.onnx_dtype(dt))
    any_nan = b.add("Greater", [reduce_max(nan), b.scalar(0.0, dt, "zero")])
    return b.add("Where", [any_nan, b.scalar(float("nan"), dt, "nan"), y])


def _arg_reduce_lowering(onnx_op: str):  # noqa: ANN202
    def lower(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
        """ArgMax/ArgMin, first occurrence like torch; the first NaN where there is one
        (torch counts NaN as the max and the min, onnxruntime skips it)."""
        axis, keep = node.attrs["dim"], int(node.attrs["keepdim"])
        x, dt = inputs[0], node.inputs[0].dtype
        i = b.add(onnx_op, [x], axis=axis, keepdims=keep)
        if not dt.is_floating_point:
            return [i]
        nan = b.add("Cast", [b.add("IsNaN", [x])], to=b.onnx_dtype(dt))
        any_nan = b.add("Greater", [reduce(b, "ReduceMax", nan, [axis % max(
            node.inputs[0].type.rank, 1)], bool(keep)), b.scalar(0.0, dt, "zero")])
        return [b.add("Where", [any_nan, b.add("ArgMax", [nan], axis=axis, keepdims=keep), i])]
    return lower


onnx_lowering("argmax")(_arg_reduce_lowering("ArgMax"))
onnx_lowering("argmin")(_arg_reduce_lowering("ArgMin"))


for _op, _onnx in {"sum": "ReduceSum", "mean": "ReduceMean", "amax": "ReduceMax",
                   "amin": "ReduceMin", "prod": "ReduceProd"}.items():
    onnx_lowering(_op)(_reduction(_onnx))


@onnx_lowering("var")
def lower_var(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """sum((x - mean)^2) / (n - correction)."""
    x, dims, dt = inputs[0], _dims(node), node.inputs[0].dtype
    shape = node.inputs[0].shape
    n = math.prod(shape[d] for d in (dims or range(len(shape))))
    centered = b.add("Sub", [x, reduce(b, "ReduceMean", x, dims, True)])
    ss = reduce(b, "ReduceSum", b.add("Mul", [centered, centered]), dims, node.attrs["keepdim"])
    if is_symbolic(n):
        count = b.add("Cast", [b.add("Squeeze", [b.size(n - node.attrs["correction"]),
                                                b.const_i64([0], "axis")])],
                      to=b.onnx_dtype(dt))
        return [b.add("Div", [ss, count])]
    denom = max(n - node.attrs["correction"], 0)
    return [b.add("Div", [ss, b.scalar(float(denom), dt, "n")])]


@onnx_lowering("cumsum")
def lower_cumsum(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """CumSum along dim."""
    axis = b.const(np.asarray(node.attrs["dim"], dtype=np.int64), "axis")
    x = cast_to(b, inputs[0], node.inputs[0].dtype, node.outputs[0].dtype)
    return [b.add("CumSum", [x, axis])]


@onnx_lowering("softmax")
def lower_softmax(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Softmax along dim."""
    return [b.add("Softmax", inputs, axis=node.attrs["dim"])]


def safe_softmax_rows(b: OnnxBuilder, x: str, probs: str, axis: int, dt: torch.dtype) -> str:
    """``probs`` (the softmax of ``x`` along ``axis``) with rows where ``x`` is all -inf set
    to 0: the semantics of ``aten._safe_softmax`` and of SDPA for fully masked rows (ONNX
    Softmax gives NaN there)."""
    dead = b.add("Equal", [reduce(b, "ReduceMax", x, [axis], True),
                           b.scalar(float("-inf"), dt, "neg_inf")])
    return b.add("Where", [dead, b.scalar(0.0, dt, "zero"), probs])


@onnx_lowering("log_softmax")
def lower_log_softmax(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """LogSoftmax along dim."""
    return [b.add("LogSoftmax", inputs, axis=node.attrs["dim"])]


def _ones(b: OnnxBuilder, shape: tuple[int, ...], dt: torch.dtype, value: float) -> str:
    return b.const(torch.full(shape, value, dtype=dt), "ones" if value else "zeros")


@onnx_lowering("layer_norm")
def lower_layer_norm(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """LayerNormalization (opset 17) over the trailing normalized_shape dims."""
    norm = tuple(node.attrs["normalized_shape"])
    dt = node.inputs[0].dtype
    scale = inputs[1] if len(inputs) > 1 and inputs[1] else _ones(b, norm, dt, 1.0)
    bias = inputs[2] if len(inputs) > 2 and inputs[2] else ""
    return [b.add("LayerNormalization", [inputs[0], scale, bias] if bias else [inputs[0], scale],
                  axis=-len(norm), epsilon=float(node.attrs["eps"]))]


@onnx_lowering("rms_norm")
def lower_rms_norm(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """x / sqrt(mean(x^2) + eps) * weight."""
    x, dt = inputs[0], node.inputs[0].dtype
    k = len(node.attrs["normalized_shape"])
    rank = node.inputs[0].type.rank
    eps = node.attrs["eps"]
    eps = torch.finfo(dt).eps if eps is None else eps
    ms = reduce(b, "ReduceMean", b.add("Mul", [x, x]), list(range(rank - k, rank)), True)
    rms = b.add("Sqrt", [b.add("Add", [ms, b.scalar(eps, dt, "eps")])])
    y = b.add("Mul", [x, b.add("Reciprocal", [rms])])
    if len(inputs) > 1 and inputs[1]:
        y = b.add("Mul", [y, inputs[1]])
    return [y]


@onnx_lowering("group_norm")
def lower_group_norm(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Normalize per (sample, group) via a (N, G, -1) view, then per-channel affine."""
    x, xv, dt = inputs[0], node.inputs[0], node.inputs[0].dtype
    g, eps = node.attrs["groups"], node.attrs["eps"]
    grouped = b.add("Reshape", [x, b.const_i64([0, g, -1], "shape")])
    mean = reduce(b, "ReduceMean", grouped, [2], True)
    centered = b.add("Sub", [grouped, mean])
    var = reduce(b, "ReduceMean", b.add("Mul", [centered, centered]), [2], True)
    inv = b.add("Reciprocal", [b.add("Sqrt", [b.add("Add", [var, b.scalar(eps, dt, "eps")])])])
    y = b.add("Reshape", [b.add("Mul", [centered, inv]), b.shape_of(x)])
    per_channel = b.const_i64([xv.shape[1]] + [1] * (xv.type.rank - 2), "shape")
    if len(inputs) > 1 and inputs[1]:
        y = b.add("Mul", [y, b.add("Reshape", [inputs[1], per_channel])])
    if len(inputs) > 2 and inputs[2]:
        y = b.add("Add", [y, b.add("Reshape", [inputs[2], per_channel])])
    return [y]


@onnx_lowering("batch_norm")
def lower_batch_norm(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """BatchNormalization with running statistics."""
    c, dt = node.inputs[0].shape[1], node.inputs[0].dtype
    scale = inputs[3] if len(inputs) > 3 and inputs[3] else _ones(b, (c,), dt, 1.0)
    bias = inputs[4] if len(inputs) > 4 and inputs[4] else _ones(b, (c,), dt, 0.0)
    return [b.add("BatchNormalization", [inputs[0], scale, bias, inputs[1], inputs[2]],
                  epsilon=float(node.attrs["eps"]))]
