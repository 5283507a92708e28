"""Triton code generation: one template module per kernel kind, plus the on-disk kernel cache.

Each template turns a :class:`~accel.codegen.fusion.KernelGroup` into readable Triton source
(``emit(group, interpret=...) -> KernelSource``); :mod:`.cache` compiles it to a module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelSource:
    """Generated source of one kernel and how the executor launches it."""

    name: str
    """Kernel function name inside the module."""
    source: str
    """Python/Triton module source."""
    meta: dict
    """Launch facts the template fixed (block sizes, row length...)."""
