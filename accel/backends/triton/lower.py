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
from accel.backends.triton.kernel import Args, CompiledKernel, Device, KernelGroup
from accel.backends.triton.kinds import ATEN, KINDS
from accel.backends.triton.partition import partition
from accel.backends.triton.record import Recorder
from accel.ir.graph import Graph


def build_kernel(group: KernelGroup, device: Device, dump_dir: Path | None = None,
                 recorder: Recorder | None = None) -> CompiledKernel | None:
    """The compiled kernel of a template group (``None`` for kinds with fixed kernels); with
    a ``recorder``, a stand-in recording its launches."""
    if group.kind.emit is None:
        return None
    src = group.kind.emit(group, device)
    if dump_dir is not None:
        dump_source(dump_dir, src.name, src.source)
    if recorder is not None:
        fn = load_kernel(src.name, src.source, jit=True)
        return CompiledKernel(src, recorder.wrap(fn, src.source, src.notes))
    return CompiledKernel(src, load_kernel(src.name, src.source, interpret=device.interpret))


def lower_triton(graph: Graph, device: Device, *, cudagraphs: bool = False,
                 dump_dir: Path | None = None, note: Callable[[str], None] = lambda _: None,
                 recorder: Recorder | None = None) -> TritonExecutor:
    """The Triton executor of ``graph`` on ``device``; ``note`` receives report lines.

    With a ``recorder`` (``device.record``), running the executor records every Triton
    launch instead of running it; library kernels run their ATen reference instead.
    """
    if (recorder is not None) != device.record:
        raise ValueError("lower_triton: a recorder goes with Device(record=True)")
    groups = partition(graph, KINDS, device, note)
    fns = []
    template_notes: Counter[str] = Counter()
    for g in groups:
        if recorder is not None and g.kind.runs_on != "triton":
            # ATen and library kernels (2:4 sparse) have nothing to compile: run the node
            assert g.kind.args is Args.NODE and not g.kind.into_buffers, g.kind
            fns.append(ATEN.launch(graph, g, None))
        else:
            kernel = build_kernel(g, device, dump_dir, recorder)
            template_notes.update(kernel.source.notes if kernel is not None else ())
            fn = g.kind.launch(graph, g, kernel)
            fns.append(fn if recorder is None else recorder.step(g, fn, g.kind.into_buffers))
        if g.kind is not ATEN:
            note(f"{g.kind.runs_on} {g.describe()}")
    for line, count in template_notes.items():
        note(line + (f" (x{count})" if count > 1 else ""))
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
