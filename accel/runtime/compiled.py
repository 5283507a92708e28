"""``CompiledModel``: the callable ``accel.compile`` returns.

It guards each call on the inputs' count, rank, dtype and device. A new *shape* (same rank,
dtype and device) compiles a new specialization, kept in a bounded LRU cache and counted
in the report; anything else is a :class:`GuardError` that says what was expected.
"""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils._pytree import tree_unflatten

from accel.errors import GuardError
from accel.ir.graph import Graph
from accel.report import Report


class Executable(Protocol):
    """What a backend lowers a graph to: ``run(inputs) -> outputs``."""

    name: str
    """The executor's name in reports (``aten``, ``onnxruntime``, ``triton``)."""

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs`` (tensors in graph input order)."""
        ...


@dataclass
class Specialization:
    """One compiled version of the model, for one set of input shapes."""

    graph: Graph
    """The optimized graph."""
    executable: Executable
    """What runs it."""

    def __post_init__(self) -> None:
        # Read the output structure once here, not on every call.
        self._leaves = self.graph.meta.get("output_leaves")
        self._spec = self.graph.meta.get("output_structure")

    def call(self, args: Sequence[torch.Tensor]) -> Any:
        """Run and rebuild the model's output structure."""
        outs = self.executable.run(args)
        if self._leaves is None or self._spec is None:
            return outs[0] if len(outs) == 1 else tuple(outs)
        return tree_unflatten([outs[i] if isinstance(i, int) else i[1] for i in self._leaves],
                              self._spec)


def _signature(args: Sequence[Any]) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else a
                 for a in args)


class CompiledModel:
    """A compiled model: call it like the module. ``.report``, ``.graph``."""

    def __init__(
        self,
        name: str,
        specialize: Callable[[tuple[torch.Tensor, ...]], Specialization],
        example_inputs: tuple[torch.Tensor, ...],
        report: Report,
        cache_size: int = 8,
    ) -> None:
        self.name = name
        self.report = report
        """What compilation did; see :class:`accel.report.Report`."""
        self._specialize = specialize
        self._cache_size = cache_size
        self._ranks = tuple((t.dim(), t.dtype, t.device.type) for t in example_inputs)
        t0 = time.perf_counter()
        first = specialize(example_inputs)
        report.compile_seconds = time.perf_counter() - t0
        self._first = first
        self._cache: OrderedDict[tuple, Specialization] = OrderedDict()
        self._cache[_signature(example_inputs)] = first

    @property
    def graph(self) -> Graph:
        """The optimized graph of the first specialization."""
        return self._first.graph

    @property
    def specializations(self) -> int:
        """How many shape specializations are cached."""
        return len(self._cache)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise GuardError(f"{self.name}: keyword arguments are not supported by the "
                             f"compiled model; pass inputs positionally")
        key = _signature(args)
        spec = self._cache.get(key)
        if spec is None:
            spec = self._recompile(args, key)
        else:
            self._cache.move_to_end(key)
        return spec.call(args)

    def _recompile(self, args: tuple, key: tuple) -> Specialization:
        self._check(args)
        self.report.recompilations += 1
        if self.report.recompilations in (self._cache_size, 4 * self._cache_size):
            warnings.warn(f"accel: {self.name} recompiled {self.report.recompilations} times "
                          "for new input shapes; pad inputs to a few fixed shapes to avoid "
                          "recompilation", stacklevel=3)
        spec = self._specialize(tuple(args))
        self._cache[key] = spec
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return spec

    def _check(self, args: tuple) -> None:
        if len(args) != len(self._ranks):
            raise GuardError(f"{self.name} was compiled for {len(self._ranks)} input(s), "
                             f"called with {len(args)}")
        for i, (a, (rank, dtype, device)) in enumerate(zip(args, self._ranks, strict=True)):
            if not isinstance(a, torch.Tensor):
                raise GuardError(f"{self.name}: input {i} is a {type(a).__name__}, "
                                 "expected a tensor")
            if a.dim() != rank:
                raise GuardError(f"{self.name}: input {i} has rank {a.dim()} (shape "
                                 f"{tuple(a.shape)}), compiled for rank {rank}; reshape it "
                                 "or compile again")
            if a.dtype != dtype:
                raise GuardError(f"{self.name}: input {i} is {a.dtype}, compiled for {dtype}; "
                                 f"convert it with .to({dtype}) or compile again")
            if a.device.type != device:
                raise GuardError(f"{self.name}: input {i} is on {a.device}, compiled for "
                                 f"{device}; move it with .to('{device}') or compile again")

    def __repr__(self) -> str:
        return (f"<CompiledModel {self.name}: {len(self.graph)} nodes, target="
                f"{self.report.target}, {self.specializations} specialization(s)>")
