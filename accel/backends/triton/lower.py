"""Lowering to the Triton backend: partition, emit and compile each group's kernel, build the
step functions, hand them to the executor.

Template kinds emit readable source (dumped with the kernel's name when asked) compiled
through the on-disk cache; single-node kinds run their fixed kernels. Every group's launcher
is built here, once, so that per-call work is only the launches themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from accel.backends.triton.cache import dump_source, load_kernel
from accel.backends.triton.executor import TritonExecutor
from accel.backends.triton.kernel import CompiledKernel, Device, KernelGroup
from accel.backends.triton.kinds import ATEN, KINDS
from accel.backends.triton.partition import partition
from accel.ir.graph import Graph


def build_kernel(group: KernelGroup, device: Device, dump_dir: Path | None = None
                 ) -> CompiledKernel | None:
    """The compiled kernel of a template group (``None`` for kinds with fixed kernels)."""
    if group.kind.emit is None:
        return None
    src = group.kind.emit(group, device.interpret)
    if dump_dir is not None:
        dump_source(dump_dir, src.name, src.source)
    return CompiledKernel(src, load_kernel(src.name, src.source, interpret=device.interpret))


def lower_triton(graph: Graph, device: Device, *, cudagraphs: bool = False,
                 dump_dir: Path | None = None, note: Callable[[str], None] = lambda _: None
                 ) -> TritonExecutor:
    """The Triton executor of ``graph`` on ``device``; ``note`` receives report lines."""
    groups = partition(graph, KINDS, device, note)
    fns = []
    for g in groups:
        fns.append(g.kind.launch(graph, g, build_kernel(g, device, dump_dir)))
        if g.kind is not ATEN:
            note(f"{g.kind.runs_on} {g.describe()}")
    aten = Counter(g.nodes[0].op for g in groups if g.kind is ATEN)
    if aten:
        note("left to aten: " + ", ".join(f"{op} x{c}" for op, c in sorted(aten.items())))
    kernels = Counter(g.kind.name for g in groups if g.kind.runs_on == "triton")
    library = Counter(f"{g.kind.name} ({g.kind.runs_on})" for g in groups
                      if g.kind.runs_on not in ("triton", "aten"))
    note(f"triton executor: {sum(kernels.values())} Triton kernels ({dict(kernels)})"
         + (f", library kernels {dict(library)}" if library else "")
         + f", {sum(aten.values())} aten steps, cudagraphs={'on' if cudagraphs else 'off'}")
    return TritonExecutor(graph, groups, fns, cudagraphs=cudagraphs)
