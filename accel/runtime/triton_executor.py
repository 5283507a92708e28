"""The Triton executor: runs fused kernel groups with generated Triton kernels, ATen for the rest.

One step per :class:`~accel.codegen.fusion.KernelGroup`. Intermediate outputs of Triton
kernels come from a memory plan that reuses buffers by liveness (views made by ATen shape
ops extend their buffer's life). With ``cudagraphs=True`` the whole schedule is captured
once into a ``torch.cuda.CUDAGraph`` and replayed (static shapes: the compiled model's
guards recompile on a new shape). ``INT8_LINEAR`` groups run the int8 matmul with fused
dequantization (:mod:`accel.codegen.triton_int8`) and ``TOKEN`` groups the token merge/prune
kernels (:mod:`accel.codegen.triton_tokens`), both into planned buffers; ``aten_fns`` lets the
target replace the reference function of chosen aten nodes (2:4 sparse linears).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import triton

from accel.codegen.fusion import GroupKind, KernelGroup
from accel.codegen.triton import KernelSource
from accel.codegen.triton_int8 import int8_linear_node_fn
from accel.codegen.triton_tokens import token_node_fn
from accel.ir.graph import Graph, Node, Value
from accel.ir.ops.registry import OpKind
from accel.runtime.executor import bind

# ATen ops whose output may be a view of an input: a planned buffer lives as long as its views
_ALIASING_KINDS = (OpKind.SHAPE, OpKind.FALLBACK)


@dataclass(frozen=True)
class GroupStep:
    """One scheduled group: ``slots[outs] = fn(*slots[ins], out_buffers)``."""

    group: KernelGroup
    fn: Callable[..., list[torch.Tensor]]
    """ATen: called with the inputs; Triton: called with inputs and preallocated outputs."""
    ins: tuple[int | None, ...]
    outs: tuple[int, ...]
    out_buffers: tuple[int | None, ...]
    """Planned buffer of each output (``None``: a fresh allocation)."""
    release: tuple[int, ...]
    is_triton: bool


def plan_buffers(graph: Graph, groups: Sequence[KernelGroup]) -> tuple[dict[Value, int], int]:
    """Assign Triton-produced intermediates to shared buffers by liveness; (plan, #buffers)."""
    roots: dict[Value, frozenset[Value]] = {}
    for g in groups:
        for n in g.nodes:
            if g.kind is not GroupKind.ATEN:
                for o in n.outputs:
                    roots[o] = frozenset({o})
            elif n.opdef.kind in _ALIASING_KINDS:
                src = frozenset().union(*(roots.get(v, frozenset()) for v in n.inputs if v))
                for o in n.outputs:
                    roots[o] = src
    pinned = frozenset().union(*(roots.get(v, frozenset()) for v in graph.outputs))
    last_use: dict[Value, int] = {}
    for i, g in enumerate(groups):
        for v in g.inputs:
            for r in roots.get(v, ()):
                last_use[r] = i
    plan: dict[Value, int] = {}
    free: list[tuple[int, torch.dtype, int]] = []  # (numel, dtype, buffer id)
    sizes: list[tuple[int, torch.dtype]] = []
    frees_at: dict[int, list[tuple[int, torch.dtype, int]]] = {}
    for i, g in enumerate(groups):
        if g.kind is GroupKind.ATEN:
            continue
        for v in g.outputs:
            if v in pinned:
                continue
            key = (v.type.numel, v.dtype)
            match = next((f for f in free if (f[0], f[1]) == key), None)
            if match is not None:
                free.remove(match)
                bid = match[2]
            else:
                bid = len(sizes)
                sizes.append(key)
            plan[v] = bid
            frees_at.setdefault(last_use.get(v, i), []).append((*key, bid))
        free.extend(frees_at.pop(i, []))
        for j in [j for j in frees_at if j < i]:
            free.extend(frees_at.pop(j))
    return plan, len(sizes)


class TritonExecutor:
    """Runs a partitioned graph: Triton kernels for fused groups, ATen references otherwise."""

    name = "triton"

    def __init__(self, graph: Graph, groups: Sequence[KernelGroup],
                 kernels: dict[str, tuple[KernelSource, object]], *,
                 cudagraphs: bool = False,
                 aten_fns: dict[Node, Callable[..., torch.Tensor]] | None = None) -> None:
        self.graph = graph
        self.groups = list(groups)
        self.cudagraphs = cudagraphs
        slot: dict[Value, int] = {}
        for v in (*graph.inputs, *graph.constants, *(o for n in graph.nodes for o in n.outputs)):
            slot[v] = len(slot)
        self.num_slots = len(slot)
        self.input_slots = tuple(slot[v] for v in graph.inputs)
        self.output_slots = tuple(slot[v] for v in graph.outputs)
        self.constants = tuple((slot[v], t) for v, t in graph.constants.items())
        self._const_outputs = {slot[v] for v in graph.outputs if v in graph.constants}
        plan, self.num_buffers = plan_buffers(graph, self.groups)
        self.buffer_numel = [0] * self.num_buffers
        self.buffer_dtype: list[torch.dtype] = [torch.float32] * self.num_buffers
        for v, b in plan.items():
            self.buffer_numel[b], self.buffer_dtype[b] = v.type.numel, v.dtype
        keep = {slot[v] for v in graph.outputs} | {slot[v] for v in graph.constants}
        last: dict[int, int] = {}
        for i, g in enumerate(self.groups):
            for v in g.inputs:
                last[slot[v]] = i
        release: list[list[int]] = [[] for _ in self.groups]
        for s, i in last.items():
            if s not in keep:
                release[i].append(s)
        self.steps: list[GroupStep] = []
        for i, g in enumerate(self.groups):
            if g.kind is GroupKind.ATEN:
                (node,) = g.nodes
                fn = (aten_fns or {}).get(node) or bind(node.opdef.ref, node.attrs)
                ins = tuple(slot[v] if v is not None else None for v in node.inputs)
            elif g.kind in _NODE_LAUNCHERS:  # one node on a hand-written kernel
                (node,) = g.nodes
                fn = _NODE_LAUNCHERS[g.kind](g)
                ins = tuple(slot[v] if v is not None else None for v in node.inputs)
            else:
                source, kernel = kernels[g.name]
                fn = make_launcher(g, source, kernel)
                ins = tuple(slot[v] for v in g.inputs)
            outs = tuple(slot[o] for o in (g.nodes[0].outputs if g.kind is GroupKind.ATEN
                                           else g.outputs))
            self.steps.append(GroupStep(g, fn, ins, outs,
                                        tuple(plan.get(o) for o in g.outputs),
                                        tuple(release[i]), g.kind is not GroupKind.ATEN))
        self._graph_cache: dict[tuple, tuple] = {}

    @property
    def planned_bytes(self) -> int:
        """Bytes of the shared intermediate buffers."""
        return sum(n * torch.empty((), dtype=d).element_size()
                   for n, d in zip(self.buffer_numel, self.buffer_dtype, strict=True))

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs``; returns the output tensors."""
        if self.cudagraphs and inputs and all(t.is_cuda for t in inputs):
            return self._run_cudagraph(inputs)
        return self._run(inputs)

    def _run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        device = inputs[0].device if inputs else torch.device("cpu")
        slots: list = [None] * self.num_slots
        buffers: list[torch.Tensor | None] = [None] * self.num_buffers
        for s, t in self.constants:
            slots[s] = t
        for s, t in zip(self.input_slots, inputs, strict=True):
            slots[s] = t
        for st in self.steps:
            args = [slots[i] if i is not None else None for i in st.ins]
            if st.is_triton:
                outs = []
                for v, b in zip(st.group.outputs, st.out_buffers, strict=True):
                    if b is None:
                        outs.append(torch.empty(v.shape, dtype=v.dtype, device=device))
                        continue
                    if buffers[b] is None:
                        buffers[b] = torch.empty(self.buffer_numel[b], dtype=self.buffer_dtype[b],
                                                 device=device)
                    outs.append(buffers[b].view(v.shape))
                st.fn(args, outs)
            else:
                out = st.fn(*args)
                outs = [out] if len(st.outs) == 1 else list(out)
            for s, o in zip(st.outs, outs, strict=True):
                slots[s] = o
            for s in st.release:
                slots[s] = None
        return [slots[s].clone() if s in self._const_outputs else slots[s]
                for s in self.output_slots]

    def _run_cudagraph(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        entry = self._graph_cache.get(key)
        if entry is None:
            static_in = [t.clone() for t in inputs]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._run(static_in)  # warm-up: compiles and autotunes outside the capture
            torch.cuda.current_stream().wait_stream(stream)
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cuda_graph):
                static_out = self._run(static_in)
            entry = (cuda_graph, static_in, static_out)
            self._graph_cache[key] = entry
        cuda_graph, static_in, static_out = entry
        for dst, src in zip(static_in, inputs, strict=True):
            dst.copy_(src)
        cuda_graph.replay()
        return [o.clone() for o in static_out]


def make_launcher(group: KernelGroup, source: KernelSource, kernel: object
                  ) -> Callable[[list[torch.Tensor], list[torch.Tensor]], None]:
    """A function launching ``kernel`` for ``group`` on (inputs, preallocated outputs)."""
    return _LAUNCHERS[group.kind](group, source, kernel)


def _pointwise(group: KernelGroup, src: KernelSource, kernel: object) -> Callable:
    numel, block = src.meta["numel"], src.meta["block"]

    def launch(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        kernel[(triton.cdiv(numel, block),)](*[t.contiguous() for t in ins], *outs, numel,
                                             BLOCK=block)
    return launch


def _reduction(group: KernelGroup, src: KernelSource, kernel: object) -> Callable:
    rows, block, warps = src.meta["rows"], src.meta["block"], src.meta["num_warps"]

    def launch(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        kernel[(rows,)](*[t.contiguous() for t in ins], *outs, BLOCK=block, num_warps=warps)
    return launch


def _matmul(group: KernelGroup, src: KernelSource, kernel: object) -> Callable:
    mm = group.nodes[0]
    m, n, k, batch = src.meta["m"], src.meta["n"], src.meta["k"], src.meta["batch"]
    pos = {v: i for i, v in enumerate(group.inputs)}
    a_pos, b_pos = pos[mm.inputs[0]], pos[mm.inputs[1]]
    bias_pos = pos[mm.inputs[2]] if src.meta["has_bias"] else None
    inside = {nd.output for nd in group.nodes}
    epi = list(dict.fromkeys(v for nd in group.nodes[1:] for v in nd.inputs
                             if v is not None and v not in inside))
    epi_pos = [pos[v] for v in epi]
    linear = mm.op == "linear"

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]), batch)

    def launch(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        a, b = ins[a_pos], ins[b_pos]
        if linear:
            a = a.reshape(m, k)
            sa = (0, a.stride(0), a.stride(1))
            sb = (0, b.stride(1), b.stride(0))  # weight [N, K] read as [K, N]
        else:
            a = a.reshape(batch, m, k)
            sa = a.stride()
            if b.dim() == 2:
                sb = (0, b.stride(0), b.stride(1))
            else:
                b = b.reshape(batch, k, n)
                sb = b.stride()
        extra = [ins[bias_pos]] if bias_pos is not None else []
        kernel[grid](a, b, *extra, *[ins[i].contiguous() for i in epi_pos], *outs, m, n, k,
                     *sa, *sb)
    return launch


def _attention(group: KernelGroup, src: KernelSource, kernel: object) -> Callable:
    (node,) = group.nodes
    bsz, heads, lq, _ = node.inputs[0].shape
    lk = node.inputs[1].shape[2]
    has_bias = src.meta["has_bias"]
    pos = {v: i for i, v in enumerate(group.inputs)}
    qkv_pos = [pos[v] for v in node.inputs[:3]]
    bias_pos = pos[node.inputs[3]] if has_bias else None

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(lq, meta["BLOCK_M"]), bsz * heads)

    def launch(ins: list[torch.Tensor], outs: list[torch.Tensor]) -> None:
        q, k, v = (ins[i] for i in qkv_pos)
        if bias_pos is not None:
            bias = ins[bias_pos].expand(bsz, heads, lq, lk)
            sz = bias.stride()
        else:
            bias, sz = q, (0, 0, 0, 0)
        kernel[grid](q, k, v, bias, outs[0], heads, lq, lk, *q.stride(), *k.stride(),
                     *v.stride(), *sz)
    return launch


def _int8_launcher(group: KernelGroup) -> Callable[[list, list[torch.Tensor]], None]:
    """Runs an int8 linear node into its planned output."""
    run = int8_linear_node_fn(group.nodes[0])

    def launch(ins: list, outs: list[torch.Tensor]) -> None:
        run(*ins, out=outs[0])
    return launch


def _token_launcher(group: KernelGroup) -> Callable[[list, list[torch.Tensor]], None]:
    """Runs a token merge/prune node into its planned outputs (scratch for an unused one)."""
    (node,) = group.nodes
    run = token_node_fn(node)
    where = [group.outputs.index(o) if o in group.outputs else None for o in node.outputs]

    def launch(ins: list, outs: list[torch.Tensor]) -> None:
        out, out_size = (outs[i] if i is not None else None for i in where)
        run(*ins, out=out, out_size=out_size)
    return launch


_NODE_LAUNCHERS = {GroupKind.INT8_LINEAR: _int8_launcher, GroupKind.TOKEN: _token_launcher}
"""Single-node groups on hand-written kernels (inputs are the node's own, None kept)."""
_LAUNCHERS = {GroupKind.POINTWISE: _pointwise, GroupKind.REDUCTION: _reduction,
              GroupKind.MATMUL: _matmul, GroupKind.ATTENTION: _attention}

