"""What a kernel kind is: the record each entry of the Triton backend's table fills in.

A :class:`KernelKind` declares, in one place, everything the backend does with one kind of
kernel: the ops that can anchor it, which nodes a group of it claims (the partitioner's rule
for it), how its source is emitted (templates) and how a group of it is launched. The table
itself is :data:`accel.backends.triton.kinds.KINDS`; each kind lives in one module
(``templates/<kind>.py`` or ``kernels/<kind>.py``) that defines its ``KIND``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch

from accel.ir.graph import Graph, Node, Value
from accel.ir.ops import check_op_names

if TYPE_CHECKING:
    from accel.backends.triton.partition import Claims

L = TypeVar("L")
"""The typed launch facts a template fixes (block sizes, problem sizes...)."""


@dataclass(frozen=True)
class KernelSource(Generic[L]):
    """Generated source of one kernel and the facts its launcher needs."""

    name: str
    """Kernel function name inside the module."""
    source: str
    """Python/Triton module source."""
    launch: L
    """Launch facts the template fixed (a dataclass of the kind's own)."""
    notes: tuple[str, ...] = ()
    """Report lines about choices the template made for this device (smaller tiles...)."""


@dataclass(frozen=True)
class CompiledKernel(Generic[L]):
    """A template's kernel, compiled through the on-disk cache."""

    source: KernelSource[L]
    fn: Any
    """The ``triton.jit`` function (or autotuner) to launch."""


class Args(enum.Enum):
    """What a group's step function is called with."""

    GROUP = "group"
    """The group's external inputs, in :attr:`KernelGroup.inputs` order (fused templates)."""
    NODE = "node"
    """The anchor node's own inputs, absent optional inputs as ``None`` (single-node kinds)."""


@dataclass(frozen=True)
class Device:
    """What a claim may depend on: the CUDA device the graph is lowered for."""

    capability: tuple[int, int] | None = None
    """``(major, minor)`` of a real CUDA device, ``None`` without one (the interpreter)."""
    interpret: bool = False
    """Kernels run in Triton's CPU interpreter (tests)."""
    fp32_precision: str = "ieee"
    """How float32 ``tl.dot`` computes: ``ieee`` (no tensor cores), ``tf32`` or ``tf32x3``
    (tensor cores; the cuda target follows ``torch.get_float32_matmul_precision()``)."""
    record: bool = False
    """Launches are recorded for ahead-of-time compilation for :attr:`capability`, not run
    (:mod:`accel.backends.triton.record`); kernels are built as for that GPU."""

    @property
    def arch(self) -> str | None:
        """The architecture name kernels are built for (``sm_90a``, ``sm_80``), ``None`` for
        the interpreter."""
        if self.capability is None or (self.interpret and not self.record):
            return None
        major, minor = self.capability
        return f"sm_{major}{minor}" + ("a" if major == 9 else "")

    @property
    def hopper(self) -> bool:
        """Kernels are built for sm_90 (wgmma needs 4-warp groups and 64-row tiles)."""
        return self.arch == "sm_90a"

    def dot_precision(self, dtype: torch.dtype) -> str:
        """The ``input_precision`` argument of ``tl.dot`` on ``dtype`` operands ('' for
        16-bit ones, which always use tensor cores)."""
        return f', input_precision="{self.fp32_precision}"' if dtype == torch.float32 else ""

    def tensor_core_dots(self, dtype: torch.dtype) -> bool:
        """Whether a ``tl.dot`` on ``dtype`` operands runs on tensor cores here."""
        return dtype != torch.float32 or self.fp32_precision != "ieee"


INTERPRETER = Device(interpret=True)
"""Triton's CPU interpreter (the tests' device)."""

Launch = Callable[..., object]
"""A step function: ``fn(inputs, outputs) -> None`` for kinds writing into buffers,
``fn(*inputs) -> output(s)`` otherwise (see :class:`accel.runtime.schedule.Unit`)."""


@dataclass(frozen=True, eq=False)
class KernelKind:
    """One kind of kernel group: what it claims, how it emits source, how it launches."""

    name: str
    """Name in reports, kernel names and dumps."""
    ops: frozenset[str] | None
    """Ops that can anchor a group of this kind, checked against the op registry
    (``None``: any op, for the aten fallback)."""
    claim: Callable[[Claims, Node], Sequence[Node] | None]
    """The group's nodes when anchored at a node applying one of :attr:`ops`, or ``None``
    to decline it (it then goes to a later kind)."""
    launch: Callable[[Graph, KernelGroup, CompiledKernel | None], Launch]
    """The group's step function, built once at lowering (weight-side work done here)."""
    emit: Callable[[KernelGroup, Device], KernelSource] | None = None
    """Template kinds: the group's Triton source for the device (its configs depend on the
    architecture); ``None`` for kinds running fixed kernels."""
    args: Args = Args.GROUP
    """What the step function is called with."""
    into_buffers: bool = True
    """The step writes into planned buffers; otherwise it returns fresh tensors."""
    chains: bool = False
    """Claimed in a second sweep, after every anchor kind took its prologue and epilogue
    (pointwise chains)."""
    select: Callable[[Graph, Device], tuple[Collection[Node], str | None]] | None = None
    """A whole-graph choice made before claiming (nodes this kind may take, and a lowering
    note), for kinds that depend on the device (2:4 sparse kernels)."""
    runs_on: str = "triton"
    """What runs the kernel, for reports: ``triton``, a library (``torch.sparse``), ``aten``."""

    def __post_init__(self) -> None:
        if self.ops is not None:
            check_op_names(self.ops, f"Triton kernel kind '{self.name}'")

    def __repr__(self) -> str:
        return f"KernelKind({self.name})"


@dataclass(frozen=True)
class KernelGroup:
    """Nodes run by one kernel, with the values it reads and the values it writes."""

    kind: KernelKind
    """The kind that claimed it."""
    nodes: tuple[Node, ...]
    """Nodes in topological order; the anchor (matmul/reduction/attention) first after any
    prologue."""
    inputs: tuple[Value, ...]
    """Values read from outside the group (graph inputs, constants, other groups)."""
    outputs: tuple[Value, ...]
    """Values used outside the group or returned by the graph."""
    device: Device = Device()
    """The device the group is lowered for (hand-written kinds read ``fp32_precision``)."""

    def describe(self) -> str:
        """One report line: kind, name and the ops it fuses."""
        return f"{self.kind.name} {self.name}: {' + '.join(n.op for n in self.nodes)}"

    @property
    def anchor(self) -> Node:
        """The node the group was claimed at (the matmul, reduction or attention; the first
        node of a pointwise chain; the only node of a single-node kind)."""
        return next(n for n in self.nodes if self.kind.ops is None or n.op in self.kind.ops)

    @property
    def name(self) -> str:
        """Kernel name: the anchor's node name."""
        return self.anchor.name


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
"""Dtypes the templates compute on."""


def is_float(v: Value | None) -> bool:
    """Whether ``v`` is absent or a float tensor the templates handle."""
    return v is None or v.dtype in FLOAT_DTYPES
