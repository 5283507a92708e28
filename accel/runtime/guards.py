"""Guards: whether a call's inputs fit a compiled specialization, and why not.

A :class:`Guard` is built once from a graph's input types and symbol table: the input count,
each input's rank, dtype and device, and each dim (a static size, a symbol whose value must
lie in its range and agree wherever it appears, or an expression of symbols). ``check``
returns ``None`` when the call fits, else a :class:`Mismatch` saying what and where, so the
caller can recompile or raise an error naming the input, the dim, the value and the range.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy
import torch

from accel.ir.graph import Graph
from accel.ir.shapes import Dim, SymbolInfo, compile_exprs, format_dim


class Kind(enum.Enum):
    """What did not fit."""

    COUNT = "input count"
    TYPE = "not a tensor"
    RANK = "rank"
    DTYPE = "dtype"
    DEVICE = "device"
    STATIC = "static dim"
    RANGE = "symbolic dim out of range"
    RELATION = "symbolic dims disagree"


@dataclass(frozen=True)
class Mismatch:
    """Why a call does not fit a specialization."""

    kind: Kind
    input: int = -1
    """Which input (``-1``: the call as a whole)."""
    axis: int = -1
    """Which dim of it (``-1``: not about a dim)."""
    got: Any = None
    """What the call has."""
    expected: str = ""
    """What the specialization takes."""

    def describe(self, name: str) -> str:
        """One error line naming the model, the input, the dim, the value and what fits."""
        if self.kind is Kind.COUNT:
            return f"{name} was compiled for {self.expected} input(s), called with {self.got}"
        where = f"{name}: input {self.input}"
        if self.axis >= 0:
            return (f"{where} dim {self.axis} is {self.got}, compiled for {self.expected}")
        return f"{where} has {self.kind.value} {self.got}, compiled for {self.expected}"


class Guard:
    """The shapes, dtypes and devices a specialization accepts."""

    def __init__(self, graph: Graph) -> None:
        self.types = tuple(v.type for v in graph.inputs)
        counted = graph.counted_symbols()  # counts of values: nothing to guard
        self.symbols: dict[str, SymbolInfo] = {n: s for n, s in graph.symbols.items()
                                               if n not in counted}
        self.dynamic = not all(t.is_static for t in self.types)
        names = tuple(sorted(self.symbols))
        self._names = names
        # (input, axis, symbol name) of bare symbols; (input, axis, expr) of derived dims
        self._bare: list[tuple[int, int, str]] = []
        derived: list[tuple[int, int, Dim]] = []
        for i, t in enumerate(self.types):
            for a, d in enumerate(t.shape):
                if isinstance(d, sympy.Symbol):
                    self._bare.append((i, a, d.name))
                elif not isinstance(d, int):
                    derived.append((i, a, d))
        self._derived = [(i, a) for i, a, _ in derived]
        self._derived_exprs = [d for _, _, d in derived]
        self._eval = compile_exprs(self._derived_exprs, names) if derived else None

    def check(self, args: Sequence[Any]) -> Mismatch | None:
        """``None`` if ``args`` fit, else the first thing that does not."""
        if len(args) != len(self.types):
            return Mismatch(Kind.COUNT, got=len(args), expected=str(len(self.types)))
        for i, (a, t) in enumerate(zip(args, self.types, strict=True)):
            if not isinstance(a, torch.Tensor):
                return Mismatch(Kind.TYPE, i, got=type(a).__name__, expected="a tensor")
            if a.dim() != t.rank:
                return Mismatch(Kind.RANK, i, got=f"{a.dim()} (shape {tuple(a.shape)})",
                                expected=f"rank {t.rank}")
            if a.dtype != t.dtype:
                return Mismatch(Kind.DTYPE, i, got=str(a.dtype), expected=str(t.dtype))
            if a.device.type != t.device:
                return Mismatch(Kind.DEVICE, i, got=str(a.device), expected=t.device)
            for axis, d in enumerate(t.shape):
                if isinstance(d, int) and a.shape[axis] != d:
                    return Mismatch(Kind.STATIC, i, axis, a.shape[axis], str(d))
        if not self.dynamic:
            return None
        values: dict[str, int] = {}
        for i, axis, name in self._bare:
            v = args[i].shape[axis]
            info = self.symbols.get(name)
            if info is not None and not info.admits(v):
                return Mismatch(Kind.RANGE, i, axis, v, info.describe())
            seen = values.setdefault(name, v)
            if seen != v:
                return Mismatch(Kind.RELATION, i, axis, v, f"{name} = {seen} (as in an earlier "
                                "dim of the same call)")
        if self._eval is not None:
            got = self._eval(*(values[n] for n in self._names))
            for (i, axis), want, expr in zip(self._derived, got, self._derived_exprs,
                                             strict=True):
                if args[i].shape[axis] != want:
                    return Mismatch(Kind.RELATION, i, axis, args[i].shape[axis],
                                    f"{format_dim(expr)} = {want}")
        return None

    def describe(self) -> str:
        """The accepted inputs, e.g. ``i64[batch,seq] with batch in [2, inf], seq in [2, 64]``."""
        types = ", ".join(str(t) for t in self.types)
        ranges = ", ".join(s.describe() for s in self.symbols.values())
        return f"{types} with {ranges}" if ranges else types
