"""Pieces shared by the templates: pointwise expressions, broadcast index maps, names.

:data:`POINTWISE_EXPR` is the table of pointwise ops the templates can emit; what the
pointwise kind claims (and what matmul/reduction epilogues may fuse) is derived from it.

A kernel is specialized to the static dims of its shapes: a broadcast input's offset is
written out from its shape and the output shape (inputs are contiguous, see the executor).
Symbolic dims (and sizes derived from them) become size arguments of the kernel
(:meth:`Emitter.dim`), marked ``do_not_specialize`` so one compiled kernel serves every
size. Arithmetic runs in fp32; stores cast to the output dtype.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import torch

from accel.errors import AccelValueError
from accel.ir.graph import Node, Value
from accel.ir.shapes import Dim

TL_DTYPE = {torch.float32: "tl.float32", torch.float16: "tl.float16",
            torch.bfloat16: "tl.bfloat16"}

_GELU_TANH_C = math.sqrt(2.0 / math.pi)


def _tanh(x: str) -> str:
    return f"(2.0 * tl.sigmoid(2.0 * ({x})) - 1.0)"


def _clamp(x: str, lo: object, hi: object) -> str:
    out = x
    if lo is not None:
        out = f"tl.maximum({out}, {float(lo)!r})"
    if hi is not None:
        out = f"tl.minimum({out}, {float(hi)!r})"
    return out


def _gelu(x: str, approximate: str) -> str:
    if approximate == "tanh":
        inner = f"{_GELU_TANH_C!r} * ({x} + 0.044715 * {x} * {x} * {x})"
        return f"0.5 * {x} * (1.0 + {_tanh(inner)})"
    return f"0.5 * {x} * (1.0 + tl.math.erf({x} * 0.7071067811865476))"


# op -> fn(args, attrs) -> Triton expression over fp32 operands
POINTWISE_EXPR: dict[str, Callable[[Sequence[str], dict], str]] = {
    "add": lambda a, at: f"{a[0]} + {a[1]}",
    "sub": lambda a, at: f"{a[0]} - {a[1]}",
    "mul": lambda a, at: f"{a[0]} * {a[1]}",
    "div": lambda a, at: f"{a[0]} / {a[1]}",
    "neg": lambda a, at: f"-{a[0]}",
    "exp": lambda a, at: f"tl.exp({a[0]})",
    "log": lambda a, at: f"tl.log({a[0]})",
    "sqrt": lambda a, at: f"tl.sqrt({a[0]})",
    "rsqrt": lambda a, at: f"tl.rsqrt({a[0]})",
    "abs": lambda a, at: f"tl.abs({a[0]})",
    "reciprocal": lambda a, at: f"1.0 / {a[0]}",
    "sin": lambda a, at: f"tl.sin({a[0]})",
    "cos": lambda a, at: f"tl.cos({a[0]})",
    "tanh": lambda a, at: _tanh(a[0]),
    "erf": lambda a, at: f"tl.math.erf({a[0]})",
    "sigmoid": lambda a, at: f"tl.sigmoid({a[0]})",
    "relu": lambda a, at: f"tl.maximum({a[0]}, 0.0)",
    "silu": lambda a, at: f"{a[0]} * tl.sigmoid({a[0]})",
    "gelu": lambda a, at: _gelu(a[0], at.get("approximate", "none")),
    "maximum": lambda a, at: f"tl.maximum({a[0]}, {a[1]})",
    "minimum": lambda a, at: f"tl.minimum({a[0]}, {a[1]})",
    "clamp": lambda a, at: _clamp(a[0], at.get("min"), at.get("max")),
    "leaky_relu": lambda a, at: (
        f"tl.where({a[0]} > 0, {a[0]}, {a[0]} * {at['negative_slope']!r})"),
    "cast": lambda a, at: f"{a[0]}.to({TL_DTYPE[at['dtype']]}).to(tl.float32)",
    "hardswish": lambda a, at: f"{a[0]} * {_clamp(f'{a[0]} + 3.0', 0, 6)} / 6.0",
    "hardsigmoid": lambda a, at: f"{_clamp(f'{a[0]} + 3.0', 0, 6)} / 6.0",
    "floor": lambda a, at: f"tl.floor({a[0]})",
    "ceil": lambda a, at: f"tl.ceil({a[0]})",
    "trunc": lambda a, at: f"tl.where({a[0]} < 0, tl.ceil({a[0]}), tl.floor({a[0]}))",
    "sign": lambda a, at: f"tl.where({a[0]} > 0, 1.0, tl.where({a[0]} < 0, -1.0, 0.0))",
    "exp2": lambda a, at: f"tl.exp2({a[0]})",
    "log2": lambda a, at: f"tl.log2({a[0]})",
    "log10": lambda a, at: f"tl.log2({a[0]}) * {math.log10(2.0)!r}",
    "expm1": lambda a, at: f"tl.exp({a[0]}) - 1.0",
    "log1p": lambda a, at: f"tl.log(1.0 + {a[0]})",
    "tan": lambda a, at: f"tl.sin({a[0]}) / tl.cos({a[0]})",
    "sinh": lambda a, at: f"0.5 * (tl.exp({a[0]}) - tl.exp(-{a[0]}))",
    "cosh": lambda a, at: f"0.5 * (tl.exp({a[0]}) + tl.exp(-{a[0]}))",
    "erfc": lambda a, at: f"1.0 - tl.math.erf({a[0]})",
}


def reg_name(v: Value) -> str:
    """The register name holding value ``v`` in generated code."""
    return "v_" + re.sub(r"[^0-9a-zA-Z_]", "_", v.name)


def kernel_name(group_name: str, kind: str) -> str:
    """A valid Python identifier for a group's kernel."""
    return f"{kind}_{re.sub(r'[^0-9a-zA-Z_]', '_', group_name)}"


def broadcast_offset(in_shape: Sequence[Dim], out_shape: Sequence[Dim], idx: str,
                     dim: Callable[[Dim], str] = str) -> str:
    """Offset into a contiguous ``in_shape`` tensor for flat index ``idx`` over ``out_shape``;
    ``dim`` writes a size (a literal, or the kernel argument of a symbolic one)."""
    in_shape = tuple(in_shape)
    out_shape = tuple(out_shape)
    n_in = math.prod(in_shape)
    if n_in == 1:
        return "0"
    padded = (1,) * (len(out_shape) - len(in_shape)) + in_shape
    if padded == out_shape:
        return idx
    # an input equal to a suffix of the output (bias over the last dims): idx % numel
    k = len(out_shape)
    while k > 0 and padded[k - 1] == out_shape[k - 1]:
        k -= 1
    if all(s == 1 for s in padded[:k]):
        return f"({idx}) % {dim(n_in)}"
    terms = []
    in_stride: Dim = 1
    for d in reversed(range(len(out_shape))):
        if padded[d] != 1:
            div = math.prod(out_shape[d + 1:])
            coord = f"(({idx}) // {dim(div)})" if div != 1 else f"({idx})"
            term = f"{coord} % {dim(out_shape[d])}"
            terms.append(f"{term} * {dim(in_stride)}" if in_stride != 1 else term)
            in_stride *= padded[d]
    return " + ".join(reversed(terms))


class Emitter:
    """Builds a kernel body: names for values, loads of inputs, pointwise statements."""

    def __init__(self, args: dict[Value, str]) -> None:
        self.args = dict(args)
        """Kernel pointer argument for each input/output value."""
        self.names: dict[Value, str] = {}
        """Register (fp32 tensor) holding each computed or loaded value."""
        self.lines: list[str] = []
        self.sizes: dict[Dim, str] = {}
        """Kernel size argument of each symbolic size the body uses, in first-use order."""

    def dim(self, d: Dim) -> str:
        """A size in the body: a literal when static, else its kernel argument."""
        if isinstance(d, int):
            return str(d)
        if d not in self.sizes:
            self.sizes[d] = f"size{len(self.sizes)}"
        return self.sizes[d]

    def load(self, v: Value, offset: str, mask: str) -> str:
        """Emit a load of ``v`` (converted to fp32) unless already loaded; its register."""
        if v not in self.names:
            name = f"{self.args[v]}_val"
            if offset == "0":  # a scalar, broadcast by arithmetic
                self.lines.append(f"{name} = tl.load({self.args[v]}).to(tl.float32)")
                self.names[v] = name
                return name
            self.lines.append(
                f"{name} = tl.load({self.args[v]} + {offset}, mask={mask}, other=0.0)"
                ".to(tl.float32)")
            self.names[v] = name
        return self.names[v]

    def pointwise(self, node: Node, operands: Sequence[str]) -> str:
        """Emit the statement computing ``node``'s output from ``operands``; its register."""
        if node.op not in POINTWISE_EXPR:
            raise AccelValueError(
                f"node {node.name}: op '{node.op}' has no Triton expression; keep it out of "
                "fused groups (accel.backends.triton.templates.expr.POINTWISE_EXPR)")
        name = reg_name(node.output)
        self.lines.append(f"{name} = {POINTWISE_EXPR[node.op](list(operands), dict(node.attrs))}")
        self.names[node.output] = name
        return name

    def store(self, v: Value, offset: str, mask: str | None) -> None:
        """Emit a store of ``v``'s register to its output pointer (``mask=None``: no mask)."""
        ptr = self.args[v]
        masked = f", mask={mask}" if mask else ""
        self.lines.append(
            f"tl.store({ptr} + {offset}, {self.names[v]}.to({ptr}.dtype.element_ty){masked})")

    def body(self, indent: int = 4) -> str:
        """The emitted lines, indented."""
        pad = " " * indent
        return "\n".join(pad + line for line in self.lines)


def pointwise_chain(em: Emitter, nodes: Sequence[Node], out_shape: Sequence[Dim], idx: str,
                    mask: str) -> None:
    """Emit ``nodes`` (pointwise, in order), loading external inputs broadcast to ``out_shape``."""
    for n in nodes:
        operands = []
        for v in n.inputs:
            if v in em.names:
                operands.append(em.names[v])
            else:
                operands.append(em.load(v, broadcast_offset(v.shape, out_shape, idx, em.dim),
                                        mask))
        em.pointwise(n, operands)


HEADER = '''"""Generated by accel: {kind} kernel for group {group}.

Fuses: {ops}
Arguments: {args}
"""
import triton
import triton.language as tl
'''


def jit(sizes: Sequence[str]) -> str:
    """The ``@triton.jit`` line: size arguments are not specialized on (one compile serves
    every size)."""
    return f"@triton.jit(do_not_specialize={list(sizes)!r})" if sizes else "@triton.jit"


def header(kind: str, group: str, nodes: Sequence[Node], args: dict[Value, str]) -> str:
    """Module docstring (fused ops, which value each pointer argument is) and imports."""
    ops = ", ".join(f"{n.name}={n.op}" for n in nodes)
    arg_doc = ", ".join(f"{a}={v.name}: {v.type}" for v, a in args.items())
    return HEADER.format(kind=kind, group=group, ops=ops, args=arg_doc)
