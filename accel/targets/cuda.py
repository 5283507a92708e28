"""The ``cuda`` target: fused Triton kernels on CUDA GPUs, ATen for the rest.

Lowering partitions the graph into kernel groups (:mod:`accel.codegen.fusion`), emits one
Triton kernel per fused group from its template, compiles it through the on-disk cache and
hands the schedule to :class:`~accel.runtime.triton_executor.TritonExecutor`. int8 linears
(``linear_int8_dynamic``/``linear_int8_static``) run the int8 matmul with fused dequantization;
token merging/pruning (``bipartite_merge``/``attentive_prune``) runs its gather and segmented
size-weighted reduce on the kernels of :mod:`accel.codegen.triton_tokens` (matching in torch);
2:4-annotated linears run ``torch.sparse`` semi-structured kernels on sm80+ with fp16/bf16
weights (:mod:`accel.codegen.sparse`), dense on their masked weights otherwise.

Options: ``cudagraphs`` (replay a captured CUDA graph), ``dump`` (directory for the kernel
sources), and ``interpret`` (internal, for tests: run the same kernels on CPU tensors under
``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import os
from collections import Counter

import torch

from accel.codegen.fusion import GroupKind, KernelGroup, partition
from accel.codegen.sparse import semi_structured_plan, sparse_linear_fn
from accel.codegen.triton import KernelSource, attention, matmul, pointwise, reduction
from accel.codegen.triton.cache import dump_source, load_kernel
from accel.errors import AccelValueError
from accel.ir.graph import Graph
from accel.runtime.executor import AtenExecutor
from accel.runtime.triton_executor import TritonExecutor
from accel.targets import Executable, LowerContext, register_target

TEMPLATES = {GroupKind.POINTWISE: pointwise, GroupKind.REDUCTION: reduction,
             GroupKind.MATMUL: matmul, GroupKind.ATTENTION: attention}


def interpreter_enabled() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def generate(group: KernelGroup, *, interpret: bool = False) -> KernelSource:
    """Triton source for one fused group, from its kind's template."""
    return TEMPLATES[group.kind].emit(group, interpret=interpret)


@register_target("cuda", "CUDA: Triton kernels for fused groups, ATen for the rest")
def lower_cuda(graph: Graph, ctx: LowerContext) -> Executable:
    """Lower for CUDA inference: partition, generate and compile Triton kernels."""
    interpret = bool(ctx.options.get("interpret", False))
    if interpret and not interpreter_enabled():
        raise AccelValueError(
            "target 'cuda' with interpret=True needs TRITON_INTERPRET=1 in the environment "
            "before triton is imported (tests/conftest.py sets it)")
    on_cuda = any(v.type.device == "cuda" for v in graph.inputs)
    real_cuda = on_cuda and torch.cuda.is_available()
    sparse_nodes, sparse_note = semi_structured_plan(
        graph, torch.cuda.get_device_capability() if real_cuda else None)
    if sparse_note:
        ctx.note(sparse_note)
    if not interpret and not real_cuda:
        ctx.note("aten executor: no CUDA device or inputs not on CUDA; Triton lowering "
                 f"skipped ({len(graph)} steps)")
        return AtenExecutor(graph)
    aten_fns = {n: sparse_linear_fn(graph, n) for n in sparse_nodes}
    groups = partition(graph, aten=sparse_nodes)
    dump = ctx.options.get("dump") or os.environ.get("ACCEL_DUMP")
    kernels: dict[str, tuple[KernelSource, object]] = {}
    for g in groups:
        if g.kind is GroupKind.ATEN:
            continue
        if g.kind is GroupKind.INT8_LINEAR:
            ctx.note(f"triton int8 matmul + fused dequant {g.describe()}")
            continue
        if g.kind is GroupKind.TOKEN:
            ctx.note(f"triton {g.describe()}")
            continue
        src = generate(g, interpret=interpret)
        if dump:
            dump_source(dump, src.name, src.source)
        kernels[g.name] = (src, load_kernel(src.name, src.source, interpret=interpret))
        ctx.note(f"triton {g.describe()}")
    aten = [g.nodes[0] for g in groups if g.kind is GroupKind.ATEN]
    if aten:
        counts = Counter(n.op for n in aten)
        ctx.note("left to aten: " + ", ".join(f"{op} x{c}" for op, c in sorted(counts.items())))
    fused = Counter(g.kind.value for g in groups if g.kind is not GroupKind.ATEN)
    cudagraphs = bool(ctx.options.get("cudagraphs", False))
    cudagraphs = cudagraphs and not interpret
    ctx.note(f"triton executor: {sum(fused.values())} kernels ({dict(fused)}), "
             f"{len(aten)} aten steps, cudagraphs={'on' if cudagraphs else 'off'}")
    return TritonExecutor(graph, groups, kernels, cudagraphs=cudagraphs, aten_fns=aten_fns)
