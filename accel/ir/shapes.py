"""Symbolic dimensions: a dim is an ``int`` or a sympy expression of named size symbols.

Symbols come from ``torch.export`` (its ShapeEnv's symbols, renamed after the user's
``torch.export.Dim`` names: ``batch``, ``seq``...); expressions are what torch derives
(``batch*seq``, ``seq + 1``, ``FloorDiv(seq, 2)``). accel does no algebra of its own:

- shape inference of an op on symbolic inputs runs the op's reference implementation on
  FakeTensors whose sizes are SymInts of a fresh :class:`ShapeEnv` carrying the symbols'
  ranges (:func:`infer_symbolic`), and reads the output sizes back as expressions;
- every graph carries a :class:`SymbolInfo` per symbol (range and example value, the
  *hint*) in ``graph.meta["symbols"]``: guards check the ranges, cost models evaluate at the
  hints, executors evaluate expressions at the sizes of each call (:func:`compile_exprs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import sympy
import torch

Dim = Union[int, sympy.Expr]  # noqa: UP007 - a runtime alias
"""One dimension: a static size or a symbolic expression."""


def symbol(name: str) -> sympy.Symbol:
    """The size symbol called ``name`` (a positive integer)."""
    return sympy.Symbol(name, integer=True, positive=True)


@dataclass(frozen=True)
class SymbolInfo:
    """What a graph knows about one size symbol."""

    name: str
    """The symbol's name (``batch``, ``seq``)."""
    lo: int
    """Smallest value the compiled graph accepts."""
    hi: int | None
    """Largest value it accepts (``None``: unbounded)."""
    hint: int
    """The example value it was captured with (cost models, reports)."""

    def admits(self, value: int) -> bool:
        """Whether ``value`` lies in the range."""
        return self.lo <= value and (self.hi is None or value <= self.hi)

    def describe(self) -> str:
        """``batch in [2, 64]``."""
        return f"{self.name} in [{self.lo}, {'inf' if self.hi is None else self.hi}]"


Symbols = Mapping[str, SymbolInfo]
"""A graph's symbol table, by name."""


def is_symbolic(value: Any) -> bool:
    """Whether ``value`` (a dim, a shape, an attribute) contains a size symbol."""
    if isinstance(value, sympy.Basic):
        return bool(value.free_symbols)
    if isinstance(value, tuple | list):
        return any(is_symbolic(v) for v in value)
    return False


def free_symbols(value: Any) -> set[sympy.Symbol]:
    """The size symbols in ``value`` (a dim, a shape, nested tuples)."""
    if isinstance(value, sympy.Basic):
        return set(value.free_symbols)  # type: ignore[arg-type]
    if isinstance(value, tuple | list):
        return set().union(*(free_symbols(v) for v in value)) if value else set()
    return set()


def canon(dim: Any) -> Dim:
    """A dim in canonical form: sympy numbers become ``int``."""
    if isinstance(dim, sympy.Basic) and dim.is_number:
        return int(dim)
    return dim


def _ranges(expr: sympy.Expr, symbols: Symbols) -> dict:
    from torch.utils._sympy.numbers import int_oo
    from torch.utils._sympy.value_ranges import ValueRanges

    out = {}
    for s in expr.free_symbols:
        info = symbols.get(s.name)
        lo, hi = (info.lo, info.hi) if info is not None else (2, None)
        out[s] = ValueRanges(lo, int_oo if hi is None else hi)
    return out


def bounds(dim: Dim, symbols: Symbols) -> tuple[int, int | None]:
    """(smallest, largest) value of ``dim`` over the symbols' ranges (``None``: unbounded),
    by torch's interval arithmetic (``bound_sympy``: sums, products, FloorDiv, Mod...)."""
    if isinstance(dim, int):
        return dim, dim
    from torch.utils._sympy.numbers import int_oo
    from torch.utils._sympy.value_ranges import bound_sympy

    vr = bound_sympy(dim, _ranges(dim, symbols))
    lo = int(vr.lower) if vr.lower not in (-int_oo, -sympy.oo) else 0
    hi = None if vr.upper in (int_oo, sympy.oo) else int(vr.upper)
    return lo, hi


def settle(dim: Dim, symbols: Symbols) -> Dim:
    """``dim``, or the int it must be when its range admits one value only (``(h-1)//32 + 1``
    for ``h`` in [2, 32] is 1): types then compare equal however a shape was derived."""
    if isinstance(dim, int) or not dim.free_symbols:
        return canon(dim)
    lo, hi = bounds(dim, symbols)
    return lo if hi == lo else dim


def canon_shape(shape: Iterable[Any]) -> tuple[Dim, ...]:
    """A shape of canonical dims (ints stay ints, torch.SymInt not allowed)."""
    return tuple(canon(d) for d in shape)


def format_dim(dim: Dim) -> str:
    """A dim as printed in types: ``64``, ``batch``, ``batch*seq``."""
    return str(dim) if isinstance(dim, int) else str(dim).replace(" ", "")


def evaluate(value: Any, sizes: Mapping[sympy.Symbol, int]) -> Any:
    """``value`` with every expression evaluated at ``sizes`` (nested tuples kept)."""
    if isinstance(value, sympy.Basic):
        return int(value.xreplace(dict(sizes))) if value.free_symbols else int(value)
    if isinstance(value, tuple):
        return tuple(evaluate(v, sizes) for v in value)
    if isinstance(value, list):
        return [evaluate(v, sizes) for v in value]
    return value


def at_hints(value: Any, symbols: Symbols) -> Any:
    """``value`` evaluated at the symbols' example values (for costs and reports)."""
    if not is_symbolic(value):
        return canon(value) if isinstance(value, sympy.Basic) else value
    return evaluate(value, {symbol(n): s.hint for n, s in symbols.items()})


def upper_bound(dim: Dim, symbols: Symbols) -> int | None:
    """The largest value ``dim`` takes within the symbols' ranges (``None``: unbounded)."""
    return bounds(dim, symbols)[1]


def compile_exprs(exprs: Sequence[Any], names: Sequence[str]) -> Callable[..., tuple]:
    """A Python function ``f(*sizes) -> tuple`` computing ``exprs`` (dims or nested tuples of
    dims) from the sizes of the symbols ``names``, in that order: compiled once, cheap per
    call. Uses torch's own sympy printer (FloorDiv, Mod...)."""
    from torch.utils._sympy.printers import PythonPrinter

    printer = PythonPrinter()
    consts: dict[str, Any] = {"math": __import__("math")}

    def src(v: Any) -> str:
        if isinstance(v, sympy.Basic):
            return f"int({printer.doprint(v)})"
        if isinstance(v, tuple):
            return "(" + "".join(f"{src(x)}, " for x in v) + ")"
        if isinstance(v, list):
            return "[" + ", ".join(src(x) for x in v) + "]"
        if v is None or isinstance(v, bool | int | str) or (
                isinstance(v, float) and math.isfinite(v)):
            return repr(v)
        name = f"_c{len(consts)}"  # any other leaf (a dtype, a TensorArg) passes through
        consts[name] = v
        return name

    body = "(" + "".join(f"{src(e)}, " for e in exprs) + ")"
    code = f"lambda {', '.join(names)}: {body}"
    return eval(code, consts)  # noqa: S307 - our own printed code


# ---- shape inference on symbolic inputs ----------------------------------------------------
class SymbolicInferenceError(Exception):
    """An op's output shape cannot be expressed without fixing a symbol's value."""


def infer_symbolic(fn: Callable[..., Any], shapes: Sequence[tuple[tuple[Dim, ...], torch.dtype]
                                                            | None],
                   attrs: Mapping[str, Any], symbols: Symbols
                   ) -> list[tuple[tuple[Dim, ...], torch.dtype]]:
    """Output ``(shape, dtype)`` s of ``fn(*inputs, **attrs)`` for symbolic input shapes.

    The inputs become FakeTensors with SymInt sizes of a fresh ShapeEnv holding each
    symbol's range; the outputs' sizes are read back as expressions of our symbols. Raises
    :class:`SymbolicInferenceError` if the op only works by fixing a symbol (a guard).
    """
    key = (fn, tuple(shapes), tuple(sorted(attrs.items(), key=lambda kv: kv[0])),
           tuple(sorted((n, s.lo, s.hi) for n, s in symbols.items()
                        if symbol(n) in free_symbols((shapes, tuple(attrs.values()))))))
    try:
        hash(key)
    except TypeError:
        return _infer_symbolic(fn, shapes, attrs, symbols)
    return _infer_cached(key, fn, tuple(shapes), attrs, symbols)


_CACHE: dict[Any, list] = {}
"""Symbolic inference results by (fn, input shapes, attrs, ranges): transformer layers
repeat the same shapes, and a FakeTensor run costs ~0.5-2 ms."""


def _infer_cached(key: Any, fn: Callable[..., Any], shapes: tuple, attrs: Mapping[str, Any],
                  symbols: Symbols) -> list[tuple[tuple[Dim, ...], torch.dtype]]:
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) > 8192:
            _CACHE.clear()
        hit = _CACHE[key] = _infer_symbolic(fn, shapes, attrs, symbols)
    return hit


def _infer_symbolic(fn: Callable[..., Any], shapes: Sequence[Any], attrs: Mapping[str, Any],
                    symbols: Symbols) -> list[tuple[tuple[Dim, ...], torch.dtype]]:
    out, guards = _run_fake(fn, shapes, attrs, symbols, shift=0)
    if guards:
        # The op's fake implementation branched on a size (often an algorithm choice, like
        # conv's batch < 16). The shape is sound only if it does not depend on the branch:
        # trace again with other example sizes and compare.
        again, _ = _run_fake(fn, shapes, attrs, symbols, shift=1)
        if again != out:
            raise SymbolicInferenceError(f"the output shape depends on the value of a "
                                         f"symbolic dim (it needs {guards})")
    return out


def _run_fake(fn: Callable[..., Any], shapes: Sequence[Any], attrs: Mapping[str, Any],
              symbols: Symbols, shift: int) -> tuple[list[tuple[tuple[Dim, ...], torch.dtype]],
                                                     str]:
    """One FakeTensor run; (outputs, the guards it recorded). ``shift`` picks other example
    sizes inside each symbol's range."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv
    from torch.utils._sympy.numbers import int_oo

    ours = sorted(free_symbols((tuple(shapes), tuple(attrs.values()))), key=str)
    env = ShapeEnv(duck_shape=False)
    to_torch: dict[sympy.Symbol, sympy.Symbol] = {}
    hints: dict[sympy.Symbol, int] = {}
    for s in ours:
        info = symbols.get(s.name) or SymbolInfo(s.name, 2, None, 17)
        hint = max(info.hint, info.lo, 2)
        if shift:
            other = hint + 13
            hint = other if info.hi is None or other <= info.hi else max(info.lo, 2, hint - 1)
        t = env.create_symbol(hint, source=ConstantSource(s.name),
                              dynamic_dim=DimDynamic.DYNAMIC)
        env.constrain_symbol_range(t, compiler_min=max(info.lo, 2),
                                   compiler_max=int_oo if info.hi is None else info.hi)
        to_torch[s], hints[t] = t, hint
    back = {t: s for s, t in to_torch.items()}

    def symint(v: Any) -> Any:
        if isinstance(v, sympy.Basic):
            expr = v.xreplace(to_torch)
            if not expr.free_symbols:
                return int(expr)
            return env.create_symintnode(expr, hint=int(expr.xreplace(hints)))
        if isinstance(v, tuple):
            return tuple(symint(x) for x in v)
        if isinstance(v, list):
            return [symint(x) for x in v]
        return v

    def dim(d: Any) -> Dim:
        if isinstance(d, torch.SymInt):
            expr = d.node.expr.xreplace(back)
            if not expr.free_symbols <= set(ours):  # an unbacked symbol of the fake run
                raise SymbolicInferenceError("its output size depends on the data (torch "
                                             f"gives it the unbacked size {expr})")
            return settle(expr, symbols)
        return int(d)

    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    with mode:
        fakes = [None if s is None else torch.empty(symint(s[0]), dtype=s[1]) for s in shapes]
        out = fn(*fakes, **{k: symint(v) for k, v in attrs.items()})
    conds = ", ".join(str(g.expr.xreplace(back)) for g in env.guards)
    outs = out if isinstance(out, tuple | list) else (out,)
    return [(tuple(dim(d) for d in o.shape), o.dtype) for o in outs], conds
