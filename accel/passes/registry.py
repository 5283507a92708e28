"""The pass registry: named, pure ``Graph -> Graph`` functions with typed options.

    @register_pass("my-pass")
    def my_pass(graph: Graph, ctx: PassContext, *, factor: float = 2.0) -> Graph:
        ...

Options are the keyword-only parameters; their annotations give the types used to parse
pipeline strings (``my-pass{factor=3}``). ``Literal[...]`` restricts an option to fixed
choices; those are checked on every call, from a pipeline string or from Python, so a pass
never validates its own choices.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from accel.errors import AccelValueError
from accel.ir.graph import Graph
from accel.report import PassRecord


@dataclass
class PassContext:
    """What a pass may read besides the graph, and where it reports."""

    example_inputs: tuple[torch.Tensor, ...] = ()
    """Inputs the model was captured with."""
    calibration: list[tuple[torch.Tensor, ...]] | None = None
    """Calibration inputs for lossy passes (``accel.compile(..., calibration=...)``)."""
    target: str = "reference"
    """The lowering target the pipeline prepares for."""
    debug: bool = False
    """Verify the graph after every pass."""
    options: dict[str, Any] = field(default_factory=dict)
    """Compile-wide options."""
    record: PassRecord | None = None
    """The record of the pass now running."""

    def note(self, message: str) -> None:
        """Add a line to the running pass's report row."""
        if self.record is not None:
            self.record.notes.append(message)

    def skip(self, reason: str) -> None:
        """Declare that the running pass does not apply here (counted in the summary)."""
        if self.record is not None:
            self.record.skipped = True
            self.record.notes.append(f"skipped: {reason}")

    def metric(self, name: str, value: float) -> None:
        """Record a measured cost of the running pass (SQNR, accuracy delta...)."""
        if self.record is not None:
            self.record.metrics[name] = float(value)


PassFn = Callable[..., Graph]


@dataclass(frozen=True)
class OptionSpec:
    """One typed pass option."""

    name: str
    type: Any
    default: Any

    def parse(self, text: str, pass_name: str) -> Any:
        """Convert the option's text from a pipeline string."""
        try:
            return _convert(text.strip(), self.type)
        except (ValueError, TypeError) as e:
            raise AccelValueError(
                f"pass '{pass_name}': option {self.name}={text!r} is not a valid "
                f"{_type_name(self.type)} ({e})"
            ) from None

    def describe(self) -> str:
        """``name: type = default``."""
        return f"{self.name}: {_type_name(self.type)} = {self.default!r}"

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values of a ``Literal[...]`` option (``None`` allowed if Optional)."""
        t, optional = self.type, False
        if typing.get_origin(t) is typing.Union or "UnionType" in str(typing.get_origin(t)):
            args = typing.get_args(t)
            optional = type(None) in args
            literals = [a for a in args if typing.get_origin(a) is typing.Literal]
            if len(literals) != 1 or len(args) != len(literals) + optional:
                return None
            t = literals[0]
        if typing.get_origin(t) is not typing.Literal:
            return None
        return typing.get_args(t) + ((None,) if optional else ())

    def check_choice(self, value: Any, pass_name: str) -> None:
        """Raise naming the pass, the option and the choices if ``value`` is not one of them."""
        choices = self.choices
        if choices is not None and value not in choices:
            raise AccelValueError(
                f"pass '{pass_name}': option {self.name}={value!r} is not a valid "
                f"{_type_name(self.type)} (choose one of {', '.join(map(str, choices))})"
            )


@dataclass(frozen=True)
class PassInfo:
    """A registered pass."""

    name: str
    fn: PassFn
    options: dict[str, OptionSpec]
    doc: str
    lossy: bool


_PASSES: dict[str, PassInfo] = {}


def register_pass(name: str, *, lossy: bool = False) -> Callable[[PassFn], PassFn]:
    """Register ``fn(graph, ctx, **options) -> Graph`` under ``name``.

    Returns ``fn``, wrapped to check its ``Literal[...]`` options on every call if it has any.
    """

    def deco(fn: PassFn) -> PassFn:
        if name in _PASSES and getattr(_PASSES[name].fn, "__wrapped__", _PASSES[name].fn) \
                is not fn:
            raise AccelValueError(f"a pass named '{name}' is already registered")
        hints = typing.get_type_hints(fn)
        options = {}
        for p in inspect.signature(fn).parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                if p.default is inspect.Parameter.empty:
                    raise AccelValueError(f"pass '{name}': option '{p.name}' needs a default")
                options[p.name] = OptionSpec(p.name, hints.get(p.name, str), p.default)
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
        checked = _checking_choices(fn, name, [o for o in options.values() if o.choices])
        _PASSES[name] = PassInfo(name, checked, options, doc, lossy)
        return checked

    return deco


def _checking_choices(fn: PassFn, name: str, specs: list[OptionSpec]) -> PassFn:
    """``fn``, checking the options in ``specs`` against their choices first."""
    if not specs:
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **options: Any) -> Graph:
        for spec in specs:
            if spec.name in options:
                spec.check_choice(options[spec.name], name)
        return fn(*args, **options)

    return checked


def get_pass(name: str) -> PassInfo:
    """The pass called ``name``; the error lists the valid names."""
    if name not in _PASSES:
        raise AccelValueError(
            f"unknown pass '{name}'; valid passes: {', '.join(sorted(_PASSES))} "
            f"(and presets: {', '.join(sorted(_presets()))})"
        )
    return _PASSES[name]


def all_passes() -> dict[str, PassInfo]:
    """Every registered pass by name."""
    return dict(_PASSES)


def _presets() -> dict[str, Any]:
    from accel.passes.pipeline import PRESETS

    return PRESETS


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(t)))
    if origin in (list, tuple):
        args = typing.get_args(t)
        return f"list[{_type_name(args[0]) if args else 'any'}]"
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return "|".join(_type_name(a) for a in typing.get_args(t))
    return getattr(t, "__name__", str(t))


def _convert(text: str, t: Any) -> Any:
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        choices = typing.get_args(t)
        if text not in choices:
            raise ValueError(f"choose one of {', '.join(map(str, choices))}")
        return text
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(t) or (str,)
        body = text.strip("[]()")
        items = [s for s in body.replace(";", ",").split(",") if s.strip()]
        values = [_convert(s.strip(), inner) for s in items]
        return values if origin is list else tuple(values)
    if origin is typing.Union or (origin is not None and "UnionType" in str(origin)):
        args = typing.get_args(t)
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(text, a)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if t is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if t is int:
        return int(text)
    if t is float:
        return float(text)
    if isinstance(t, type) and issubclass(t, __import__("enum").Enum):
        try:
            return t(text)
        except ValueError:
            raise ValueError(f"choose one of {', '.join(m.value for m in t)}") from None
    return text
