"""Dynamic shapes at capture: the user's specification, and the symbols torch.export makes.

``dynamic_shapes`` takes what ``torch.export.export(dynamic_shapes=...)`` takes (one entry
per input: a dict ``{axis: torch.export.Dim}`` or ``None``), or ``"auto"``: dim 0 of every
input and dim 1 of integer (token) inputs, as ``Dim.AUTO`` (torch infers each range and
keeps a dim static where the model needs it). After export, each ShapeEnv symbol is renamed
after the user's ``Dim`` name, or ``batch`` / ``seq`` / ``height`` / ``width`` by position,
and gets a :class:`~accel.ir.shapes.SymbolInfo` with its range and example value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy
import torch
from torch.export import Dim

from accel.errors import AccelTypeError
from accel.ir.shapes import Dim as IRDim
from accel.ir.shapes import SymbolInfo, canon, settle, symbol

DynamicShapes = Any
"""``None``, ``"auto"``, or a torch.export ``dynamic_shapes`` specification."""


def auto_spec(inputs: Sequence[torch.Tensor]) -> tuple[dict[int, Any] | None, ...]:
    """``"auto"``: dim 0 of every input, and dim 1 of integer inputs of rank >= 2."""
    spec = []
    for t in inputs:
        axes: dict[int, Any] = {}
        if t.dim() >= 1:
            axes[0] = Dim.AUTO
        if t.dim() >= 2 and not (t.dtype.is_floating_point or t.dtype.is_complex):
            axes[1] = Dim.AUTO
        spec.append(axes or None)
    return tuple(spec)


def batch_spec(inputs: Sequence[torch.Tensor]) -> tuple[dict[int, Any] | None, ...]:
    """Dim 0 of every input (``Dim.AUTO``: torch keeps it static if the model needs that)."""
    return tuple({0: Dim.AUTO} if t.dim() else None for t in inputs)


def axes_spec(axes: Mapping[int, Sequence[int]], count: int) -> tuple[dict[int, Any] | None, ...]:
    """A spec making ``axes[input]`` dynamic (``Dim.AUTO``) for each of ``count`` inputs."""
    return tuple({a: Dim.AUTO for a in sorted(axes.get(i, ()))} or None for i in range(count))


def normalize_spec(spec: DynamicShapes, inputs: Sequence[torch.Tensor]) -> Any:
    """The torch.export specification for ``spec`` (``None`` for static capture)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "auto":
            raise AccelTypeError(f"dynamic_shapes={spec!r}: use 'auto', or a specification like "
                                 "torch.export.export's (per input, {axis: torch.export.Dim})")
        return auto_spec(inputs)
    if isinstance(spec, dict | list | tuple):
        return tuple(spec) if isinstance(spec, list) else spec
    raise AccelTypeError(f"dynamic_shapes must be 'auto', a tuple with one entry per input or "
                         f"a dict by argument name, got {type(spec).__name__}")


def widen_examples(inputs: Sequence[torch.Tensor], spec: Any) -> tuple[torch.Tensor, ...]:
    """Examples with every dynamic dim of size 0 or 1 repeated to 2.

    torch.export keeps a dim static when its example size is 0 or 1 (it changes
    broadcasting), so a model exported at batch 1 would only ever run at batch 1. Tracing at
    2 gives the symbolic graph; sizes 0 and 1 still get their own static specialization at
    call time (the graph's range starts at 2).
    """
    if spec is None or isinstance(spec, dict):
        return tuple(inputs)
    out = []
    for t, entry in zip(inputs, list(spec) + [None] * len(inputs), strict=False):
        axes = list(entry) if isinstance(entry, dict) else (
            [a for a, d in enumerate(entry) if d is not None] if entry else [])
        for a in axes:
            if a < t.dim() and t.shape[a] < 2:
                reps = [1] * t.dim()
                reps[a] = 2 if t.shape[a] == 1 else 0
                t = t.repeat(*reps) if t.shape[a] == 1 else t
        out.append(t)
    return tuple(out)


def _default_name(axis: int, value: torch.Tensor) -> str:
    integer = not (value.dtype.is_floating_point or value.dtype.is_complex)
    if axis == 0:
        return "batch"
    if axis == 1 and (integer or value.dim() == 3):
        return "seq"
    if value.dim() == 4 and axis in (2, 3):
        return ("height", "width")[axis - 2]
    return f"d{axis}"


def _user_names(spec: Any, count: int) -> list[dict[int, str]]:
    """Dim names the user gave, by input and axis."""
    entries = list(spec.values()) if isinstance(spec, dict) else list(spec or ())
    names: list[dict[int, str]] = [{} for _ in range(count)]
    for i, entry in enumerate(entries[:count]):
        axes = entry.items() if isinstance(entry, dict) else enumerate(entry or ())
        for axis, d in axes:
            name = getattr(d, "__name__", None)
            if isinstance(name, str) and name.isidentifier() and not name.startswith("_"):
                names[i][axis] = name
    return names


def name_symbols(input_vals: Sequence[Any], inputs: Sequence[torch.Tensor], spec: Any,
                 range_constraints: Mapping[sympy.Symbol, Any]
                 ) -> tuple[dict[sympy.Symbol, sympy.Symbol], dict[str, SymbolInfo]]:
    """(torch symbol -> accel symbol, symbol table) for an exported program.

    ``input_vals`` are the user-input placeholders' FakeTensors, ``inputs`` the example
    tensors they stand for (their sizes are the hints).
    """
    user = _user_names(spec, len(inputs))
    rename: dict[sympy.Symbol, sympy.Symbol] = {}
    table: dict[str, SymbolInfo] = {}
    for i, (val, t) in enumerate(zip(input_vals, inputs, strict=True)):
        for axis, d in enumerate(getattr(val, "shape", ())):
            if not isinstance(d, torch.SymInt):
                continue
            expr = d.node.expr
            if not isinstance(expr, sympy.Symbol) or expr in rename:
                continue
            base = user[i].get(axis) or _default_name(axis, t)
            name, k = base, 1
            while name in table:
                name, k = f"{base}_{k}", k + 1
            vr = range_constraints.get(expr)
            lo = _bound(vr.lower) if vr is not None else None
            hi = _bound(vr.upper) if vr is not None else None
            rename[expr] = symbol(name)
            # sizes 0 and 1 change broadcasting and squeezes: a graph traced at >= 2 serves
            # >= 2 only (0/1 get static specializations), whatever torch allows; one traced
            # at 1 that torch kept symbolic serves the range torch gives from 1 up
            hint = int(t.shape[axis])
            low = max(2, lo or 0) if hint >= 2 else max(lo or 0, hint)
            table[name] = SymbolInfo(name, low, hi, hint)
    for i, val in enumerate(input_vals):
        for axis, d in enumerate(getattr(val, "shape", ())):
            if isinstance(d, torch.SymInt) and not isinstance(d.node.expr, sympy.Symbol) \
                    and not d.node.expr.xreplace(rename).free_symbols <= {
                        symbol(n) for n in table}:
                raise AccelTypeError(
                    f"input {i} dim {axis} is a derived dim ({d.node.expr}); accel reads every "
                    "size symbol from an input dim that is exactly that symbol: declare that "
                    "dim (e.g. Dim('k')) on some input, or make the derived one static")
    return rename, table


def _bound(x: Any) -> int | None:
    """A range bound as an int (``None`` for infinity)."""
    from torch.utils._sympy.numbers import int_oo

    if x in (int_oo, -int_oo, sympy.oo, -sympy.oo):
        return None
    return int(x)


def to_dim(value: Any, rename: Mapping[sympy.Symbol, sympy.Symbol],
           symbols: Mapping[str, SymbolInfo] | None = None) -> IRDim:
    """A torch size (int or SymInt) as an accel dim (settled to an int when the symbols'
    ranges leave it one value)."""
    if isinstance(value, torch.SymInt):
        expr = value.node.expr.xreplace(dict(rename))
        return settle(expr, symbols) if symbols else canon(expr)
    return int(value)
