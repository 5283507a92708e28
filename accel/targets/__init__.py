"""Lowering targets: what runs after the pass pipeline, chosen by ``target=``.

A target turns the optimized graph into an :class:`Executable` (fusion, code generation,
executor choice) and says what it did in the report. Targets register by name; ``auto``
picks ``cuda`` for CUDA inputs and ``cpu`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from accel.errors import AccelValueError
from accel.ir.graph import Graph


class Executable(Protocol):
    """A compiled graph: ``run(inputs) -> outputs``."""

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs`` (tensors in graph input order)."""
        ...


@dataclass
class LowerContext:
    """What lowering may read, and where it reports."""

    options: dict[str, Any] = field(default_factory=dict)
    """Compile options (``cudagraphs``, ``executor``...)."""
    notes: list[str] = field(default_factory=list)
    """Report lines: kernel groups, executor choice, what was left to aten."""
    example_inputs: tuple[torch.Tensor, ...] = ()
    """Inputs of this specialization (for measurement-based choices)."""

    def note(self, message: str) -> None:
        """Add a line to the report's lowering section."""
        self.notes.append(message)


LowerFn = Callable[[Graph, LowerContext], Executable]
_TARGETS: dict[str, tuple[LowerFn, str]] = {}


def register_target(name: str, doc: str) -> Callable[[LowerFn], LowerFn]:
    """Register ``lower(graph, ctx) -> Executable`` as target ``name``."""

    def deco(fn: LowerFn) -> LowerFn:
        _TARGETS[name] = (fn, doc)
        return fn

    return deco


def resolve_target(name: str, example_inputs: Sequence[torch.Tensor]) -> str:
    """The concrete target for ``name`` (``auto`` becomes ``cuda`` or ``cpu``)."""
    _load()
    if name == "auto":
        return "cuda" if any(t.is_cuda for t in example_inputs) else "cpu"
    if name not in _TARGETS:
        raise AccelValueError(
            f"unknown target '{name}'; valid targets: auto, {', '.join(sorted(_TARGETS))}"
        )
    return name


def lower(graph: Graph, target: str, ctx: LowerContext) -> Executable:
    """Lower ``graph`` for a concrete target."""
    _load()
    fn, _ = _TARGETS[target]
    return fn(graph, ctx)


def all_targets() -> dict[str, str]:
    """Target names and their one-line descriptions."""
    _load()
    return {k: doc for k, (_, doc) in _TARGETS.items()}


def _load() -> None:
    import importlib
    import pkgutil

    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
