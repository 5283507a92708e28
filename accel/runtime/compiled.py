"""``CompiledModel``: the callable ``accel.compile`` returns.

It guards each call on the inputs' count, rank, dtype and device, and on their sizes
against each specialization's guard (static sizes, or symbolic dims and their ranges). A
call no specialization accepts compiles a new one (automatic dynamic: the dims that changed
become symbolic), kept in a bounded cache and counted in the report; a wrong count, rank,
dtype or device is a :class:`GuardError` that says what was expected.
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

from accel.errors import AccelError, GuardError
from accel.ir.graph import Graph
from accel.report import Report
from accel.runtime.guards import Guard, Kind, Mismatch


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
        self.guard = Guard(self.graph)
        """The calls this specialization accepts."""
        self._mutations: tuple[tuple[int, int], ...] = tuple(
            self.graph.meta.get("input_mutations", ()))
        """(graph output, graph input) of each input the model updates in place."""
        self._user_outputs = len(self.graph.outputs) - len(self._mutations)

    def call(self, args: Sequence[torch.Tensor]) -> Any:
        """Run, write in-place updates back into the caller's tensors, and rebuild the model's
        output structure."""
        if self._mutations:
            _check_no_aliasing(self.graph, args, self._mutations)
        outs = self.executable.run(args)
        if self._mutations:
            outs = _write_back(outs, args, self._mutations)[:self._user_outputs]
        if self._leaves is None or self._spec is None:
            return outs[0] if len(outs) == 1 else tuple(outs)
        return tree_unflatten([outs[i] if isinstance(i, int) else i[1] for i in self._leaves],
                              self._spec)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _check_no_aliasing(graph: Graph, args: Sequence[torch.Tensor],
                       mutations: Sequence[tuple[int, int]]) -> None:
    """Refuse a call in which an input the model updates in place shares memory with another
    input: eager would see the update through the other input, the functional graph does
    not."""
    for _, i in mutations:
        a = args[i]
        if a.numel() == 0:
            continue
        for j, b in enumerate(args):
            if j != i and isinstance(b, torch.Tensor) and b.numel() and \
                    _storage(b) == _storage(a):
                raise GuardError(
                    f"{graph.name}: input {i} ({graph.inputs[i].name}), which the model updates "
                    f"in place, shares memory with input {j} ({graph.inputs[j].name}); accel "
                    "compiles a functional graph, which cannot see an update through an alias: "
                    "pass separate tensors (e.g. .clone() one of them)")


def _write_back(outs: list[torch.Tensor], args: Sequence[torch.Tensor],
                mutations: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Copy each updated input's new value into the caller's tensor (``inp.copy_(new)``).
    Results that share memory with an updated input (a view an executor returned) are
    cloned first, so neither the copies nor the outputs see each other's writes."""
    written = {_storage(args[i]) for _, i in mutations if args[i].numel()}
    outs = [o.clone() if isinstance(o, torch.Tensor) and o.numel() and _storage(o) in written
            else o for o in outs]
    with torch.no_grad():
        for k, i in mutations:
            args[i].copy_(outs[k])
    return outs


def _shapes(args: Sequence[Any]) -> str:
    return ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))


def _without(spec: Any, axes: dict[int, set[int]]) -> Any:
    """A per-input dynamic_shapes tuple without ``axes`` (``None`` for other spec forms)."""
    if not isinstance(spec, tuple | list):
        return None
    out = []
    for i, entry in enumerate(spec):
        if isinstance(entry, dict):
            entry = {a: d for a, d in entry.items() if a not in axes.get(i, set())} or None
        out.append(entry)
    return tuple(out) if any(e for e in out) else None


def _signature(args: Sequence[Any]) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else a
                 for a in args)


@dataclass(frozen=True)
class AutoDynamic:
    """Automatic dynamic's recompile request: make these dims of these inputs symbolic."""

    axes: dict[int, frozenset[int]]
    """Input index -> axes."""


Specialize = Callable[..., Specialization]
"""``specialize(inputs, dynamic, keep_weights=False) -> Specialization``: capture, optimize
and lower; ``dynamic`` is ``None`` (static), the user's ``dynamic_shapes``, or an
:class:`AutoDynamic`; ``keep_weights`` keeps the graph's constants even where an executor
owns a copy (for export)."""


class CompiledModel:
    """A compiled model: call it like the module. ``.report``, ``.graph``.

    Each specialization serves every call its :class:`~accel.runtime.guards.Guard` accepts:
    one shape for a static graph, every size in range for a graph with symbolic dims. A call
    no specialization accepts compiles a new one, as torch.compile's automatic dynamic does:
    the dims that differ from the first example are made symbolic (``Dim.AUTO``), so later
    sizes reuse it; if even that one does not accept the call (a size torch.export keeps
    static, or 0/1), a static specialization for the call's shape. A dim the user declared
    dynamic (``dynamic_shapes=``) called with a size outside its range is a
    :class:`GuardError` naming the input, the dim, the value and the range. With
    ``serve_example`` (the default), a declared dim of size 0/1 in the example stays static
    in the first graph, so the first graph serves the example; the first call with another
    size compiles the dim symbolic.
    """

    def __init__(
        self,
        name: str,
        specialize: Specialize,
        example_inputs: tuple[torch.Tensor, ...],
        report: Report,
        cache_size: int = 8,
        dynamic_shapes: Any = None,
        serve_example: bool = True,
    ) -> None:
        self.name = name
        self.report = report
        """What compilation did; see :class:`accel.report.Report`."""
        self._specialize = specialize
        self._cache_size = cache_size
        self._explicit = dynamic_shapes is not None
        self._dynamic_shapes = dynamic_shapes
        self._unusable: set[int] = set()
        """Axes a symbolic compile failed on (automatic dynamic keeps them static)."""
        self._example = tuple(example_inputs)
        self._ranks = tuple((t.dim(), t.dtype, t.device.type) for t in example_inputs)
        self._dynamic_axes: dict[int, set[int]] = {}
        first_shapes = dynamic_shapes
        if serve_example and isinstance(dynamic_shapes, tuple | list):
            # a dim of size 0/1 in the example stays static in the first graph (a symbolic
            # graph is traced at >= 2 and would not take the example itself); the first call
            # with another size compiles it symbolic, as torch.compile's automatic dynamic
            small = {i: {a for a, n in enumerate(t.shape) if n < 2}
                     for i, t in enumerate(self._example)}
            if any(small.values()):
                first_shapes = _without(dynamic_shapes, small)
        t0 = time.perf_counter()
        first = specialize(self._example, first_shapes)
        report.compile_seconds = time.perf_counter() - t0
        self._first = first
        self._specs: list[Specialization] = [first]
        """Specializations, most recently used first (at most ``cache_size``)."""
        self._by_signature: OrderedDict[tuple, Specialization] = OrderedDict()
        """Exact input signatures already dispatched, to skip the guards on repeat shapes."""

    @property
    def graph(self) -> Graph:
        """The optimized graph of the first specialization."""
        return self._first.graph

    def specialize(self, dynamic: Any = None, keep_weights: bool = True) -> Specialization:
        """A new specialization at the first example's shapes with ``dynamic``'s dims
        symbolic (an :class:`AutoDynamic`, or ``None``: as the first one was compiled),
        compiled like the others with its graph's weights kept (for export); not cached."""
        if dynamic is None:
            dynamic = self._dynamic_shapes
        return self._specialize(self._example, dynamic, keep_weights=keep_weights)

    @property
    def specializations(self) -> int:
        """How many specializations are cached."""
        return len(self._specs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise GuardError(f"{self.name}: keyword arguments are not supported by the "
                             f"compiled model; pass inputs positionally")
        key = _signature(args)
        spec = self._by_signature.get(key)
        if spec is None:
            spec = self._dispatch(args, key)
        return spec.call(args)

    def _dispatch(self, args: tuple, key: tuple) -> Specialization:
        """The specialization for a new input signature: the first whose guard accepts it,
        else a new one."""
        self._check(args)
        mismatches = []
        for spec in self._specs:
            m = spec.guard.check(args)
            if m is None:
                break
            mismatches.append(m)
        else:
            spec = self._recompile(args, mismatches)
        if spec in self._specs:
            self._specs.remove(spec)
        self._specs.insert(0, spec)
        for evicted in self._specs[self._cache_size:]:  # drop them from the fast path too
            for k in [k for k, v in self._by_signature.items() if v is evicted]:
                del self._by_signature[k]
        del self._specs[self._cache_size:]
        self._by_signature[key] = spec
        if len(self._by_signature) > 16 * self._cache_size:
            self._by_signature.popitem(last=False)
        return spec

    def _recompile(self, args: tuple, mismatches: list[Mismatch]) -> Specialization:
        ranges = [m for m in mismatches if m.kind is Kind.RANGE]
        hard = [m for m in ranges if m.got not in (0, 1)]  # 0/1: outside every symbolic range
        if self._explicit and hard:
            raise GuardError(hard[0].describe(self.name) + "; it was declared dynamic with "
                             "that range (dynamic_shapes=...): widen the range or compile again")
        self.report.recompilations += 1
        if self.report.recompilations in (self._cache_size, 4 * self._cache_size):
            warnings.warn(f"accel: {self.name} recompiled {self.report.recompilations} times "
                          "for new input shapes; pass dynamic_shapes=... (or pad inputs to a "
                          "few fixed shapes) to avoid recompilation", stacklevel=4)
        # dims of size 0 or 1 in this call stay static in the new compile (torch keeps them
        # out of symbolic ranges); every other dim that has changed becomes symbolic
        small = {i: {a for a, n in enumerate(t.shape) if n < 2} for i, t in enumerate(args)}
        if self._explicit:
            wanted = _without(self._dynamic_shapes, small)
        else:
            for i, (t, e) in enumerate(zip(args, self._example, strict=True)):
                changed = {a for a, (x, y) in enumerate(zip(t.shape, e.shape, strict=True))
                           if x != y}
                self._dynamic_axes.setdefault(i, set()).update(changed - self._unusable)
            axes = {i: frozenset(a - small[i]) for i, a in self._dynamic_axes.items()
                    if a - small[i]}
            wanted = AutoDynamic(axes) if axes else None
        if wanted is not None:
            try:
                spec = self._specialize(tuple(args), wanted)
            except AccelError as e:  # the dims cannot be symbolic here: a static compile
                self._note(f"recompile at {_shapes(args)}: symbolic dims failed ({e}); "
                           "compiled static")
                self._unusable.update(a for axes in self._dynamic_axes.values() for a in axes)
            else:
                if spec.guard.check(args) is None:
                    return spec
        return self._specialize(tuple(args), None)  # a size only a static graph takes

    def _note(self, line: str) -> None:
        self.report.lowering.append(line.splitlines()[0])

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
        dyn = " (dynamic)" if self._first.guard.dynamic else ""
        return (f"<CompiledModel {self.name}: {len(self.graph)} nodes, target="
                f"{self.report.target}, {self.specializations} specialization(s){dyn}>")
