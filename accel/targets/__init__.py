"""Lowering targets: which backends run the optimized graph, chosen by ``target=``.

A target only chooses and combines backends (:mod:`accel.backends`): ``reference`` runs
aten; ``cpu`` measures onnxruntime against aten and keeps the faster; ``cuda`` runs the
Triton backend (aten for what it does not fuse). It returns an
:class:`~accel.runtime.Executable` and says what it did in the report. Targets register by
name with the options they accept; ``auto`` picks ``cuda`` for CUDA inputs and ``cpu``
otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from accel.errors import AccelValueError
from accel.ir.graph import Graph
from accel.runtime import Executable


@dataclass
class LowerContext:
    """What lowering may read, and where it reports."""

    options: dict[str, Any] = field(default_factory=dict)
    """Target options (``executor``, ``cudagraphs``...), checked against the target's."""
    notes: list[str] = field(default_factory=list)
    """Report lines: kernel groups, executor choice, what was left to aten."""
    example_inputs: tuple[torch.Tensor, ...] = ()
    """Inputs of this specialization (for measurement-based choices)."""
    dump_dir: Path | None = None
    """Where to write generated kernels (``dump=`` / ``ACCEL_DUMP``), if anywhere."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Time spent in named parts of lowering (``choice``: measuring executors)."""
    keep_model: bool = False
    """Keep the model file an executor starts from (``model_file``), for the compile
    cache."""
    keep_weights: bool = False
    """Keep the graph's constants in memory throughout (export reads them afterwards);
    otherwise a target may move them out of the graph while runtime sessions are built."""

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the block to ``seconds[stage]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def note(self, message: str) -> None:
        """Add a line to the report's lowering section."""
        self.notes.append(message)


LowerFn = Callable[[Graph, LowerContext], Executable]


@dataclass(frozen=True)
class TargetInfo:
    """A registered target."""

    name: str
    lower: LowerFn
    doc: str
    options: Mapping[str, str]
    """Option name -> one-line description."""


_TARGETS: dict[str, TargetInfo] = {}


def register_target(name: str, doc: str, options: Mapping[str, str] | None = None
                    ) -> Callable[[LowerFn], LowerFn]:
    """Register ``lower(graph, ctx) -> Executable`` as target ``name`` taking ``options``."""

    def deco(fn: LowerFn) -> LowerFn:
        _TARGETS[name] = TargetInfo(name, fn, doc, dict(options or {}))
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


def check_options(target: str, options: Mapping[str, Any]) -> None:
    """Raise naming the option unless every key of ``options`` is one ``target`` takes."""
    _load()
    known = _TARGETS[target].options
    for key in options:
        if key not in known:
            valid = ", ".join(f"{k} ({d})" for k, d in known.items()) or "none"
            raise AccelValueError(f"target '{target}' has no option '{key}'; its options: "
                                  f"{valid}")


def lower(graph: Graph, target: str, ctx: LowerContext) -> Executable:
    """Lower ``graph`` for a concrete target."""
    _load()
    return _TARGETS[target].lower(graph, ctx)


def all_targets() -> dict[str, TargetInfo]:
    """Every registered target by name."""
    _load()
    return dict(_TARGETS)


def _load() -> None:
    import importlib
    import pkgutil

    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")
