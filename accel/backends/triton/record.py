"""Recording kernel launches instead of running them, for ahead-of-time compilation.

A graph lowered with ``Device(record=True)`` runs its schedule on CPU tensors with every
Triton launch replaced by a record of what would have been launched: the kernel, its
arguments (tensors as dtype and alignment, scalars as values), its constexprs and its grid.
:mod:`accel.backends.triton.aot` then compiles each record for a named GPU architecture.
Nothing is computed by a recorded launch: the step writes zeros into its outputs so that
later steps (ATen ones included) see well-formed values of the right shapes.

Template kinds get their recording wrapper from :func:`accel.backends.triton.lower.build_kernel`;
hand-written kernels launch through :func:`launcher`, which returns the kernel itself unless a
recording step is running.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from accel import env
from accel.backends.triton.kernel import KernelGroup

_ACTIVE: contextvars.ContextVar[tuple[Recorder, KernelGroup] | None] = contextvars.ContextVar(
    "accel_triton_recorder", default=None)


@dataclass(frozen=True)
class TensorArg:
    """A tensor argument as the compiler sees it: its dtype and whether its address is
    16-byte aligned (Triton specializes pointers on that)."""

    dtype: torch.dtype
    aligned: bool
    nbytes: int

    def stand_in(self) -> torch.Tensor:
        """A small CPU tensor with the same dtype and alignment, for Triton's binder."""
        item = torch.empty((), dtype=self.dtype).element_size()
        base = torch.empty(64 // item + 16, dtype=self.dtype)
        start = (-base.data_ptr() % 16) // item  # first 16-byte aligned element
        return base[start + (0 if self.aligned else 1):]


@dataclass
class LaunchRecord:
    """One launch that would have run: which kernel, with what, over which grid."""

    group: KernelGroup
    """The kernel group whose step launched it."""
    kernel: Any
    """The kernel object launched (``triton.jit`` function or autotuner)."""
    source: str | None
    """The module source of a template kernel (``None`` for hand-written kernels)."""
    args: tuple[Any, ...]
    """Positional arguments, tensors as :class:`TensorArg`."""
    kwargs: dict[str, Any]
    """Keyword arguments (constexprs, ``num_warps``...)."""
    grid: Any
    """The grid: a tuple, or a function of the chosen config's meta-parameters."""
    notes: tuple[str, ...] = ()
    """The template's notes on choices it made (smaller tiles...)."""

    def grid_size(self, meta: dict[str, Any]) -> int:
        """Number of programs launched with these meta-parameters."""
        grid = self.grid(meta) if callable(self.grid) else self.grid
        n = 1
        for g in grid:
            n *= int(g)
        return n


@dataclass
class Recorder:
    """Collects the launches of recording steps, in launch order."""

    launches: list[LaunchRecord] = field(default_factory=list)

    def wrap(self, kernel: Any, source: str | None = None, notes: tuple[str, ...] = ()
             ) -> _Recording:
        """A stand-in for ``kernel`` whose ``kernel[grid](...)`` records the launch."""
        return _Recording(self, kernel, source, notes)

    def step(self, group: KernelGroup, fn: Callable[..., Any], into_buffers: bool
             ) -> Callable[..., Any]:
        """``fn`` run with recording on; its outputs zero-filled afterwards."""
        def run(*args: Any) -> Any:
            token = _ACTIVE.set((self, group))
            try:
                result = fn(*args)
            finally:
                _ACTIVE.reset(token)
            outs = args[-1] if into_buffers else result
            for t in _tensors(outs):
                t.zero_()
            return result
        if getattr(fn, "sized", False):
            run.sized = True  # type: ignore[attr-defined]
        return run


class _Recording:
    def __init__(self, recorder: Recorder, kernel: Any, source: str | None,
                 notes: tuple[str, ...]) -> None:
        self.recorder, self.kernel, self.source, self.notes = recorder, kernel, source, notes

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def launch(*args: Any, **kwargs: Any) -> None:
            active = _ACTIVE.get()
            if active is None:
                raise RuntimeError("a recorded Triton kernel was launched outside a recording "
                                   "step (accel.backends.triton.record)")
            recorder, group = active
            recorder.launches.append(LaunchRecord(
                group, self.kernel, self.source, tuple(_describe(a) for a in args),
                {k: _describe(v) for k, v in kwargs.items()}, grid, self.notes))
        return launch


def launcher(kernel: Any) -> Any:
    """``kernel``, or its recording stand-in while a recording step runs."""
    active = _ACTIVE.get()
    return kernel if active is None else active[0].wrap(kernel)


def interpreted() -> bool:
    """Whether launches run in Triton's interpreter now (small blocks), rather than on, or
    being recorded for, a GPU."""
    return env.triton_interpret() and _ACTIVE.get() is None


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return TensorArg(value.dtype, value.data_ptr() % 16 == 0,
                         value.numel() * value.element_size())
    return value


def _tensors(value: Any) -> Sequence[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []
