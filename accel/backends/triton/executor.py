"""The Triton executor: runs a partitioned graph, one step per kernel group.

The groups become the units of the one :class:`~accel.runtime.schedule.Schedule`: kernel
kinds that write into buffers get their intermediates from the schedule's buffer plan
(allocated once per device, reused by liveness; views made by ATen shape ops extend their
buffer's life), the others (aten, 2:4 library kernels) return fresh tensors. With
``cudagraphs=True`` the whole schedule is captured once into a ``torch.cuda.CUDAGraph`` and
replayed (static shapes: the compiled model's guards recompile on a new shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from accel.backends.triton.kernel import Args, KernelGroup
from accel.ir.graph import Graph
from accel.runtime.schedule import Schedule, Unit


def group_unit(group: KernelGroup) -> Unit:
    """The schedule unit of a kernel group: what its step function reads and writes."""
    kind = group.kind
    node = group.nodes[0]
    inputs = node.inputs if kind.args is Args.NODE else group.inputs
    outputs = group.outputs if kind.into_buffers else node.outputs
    return Unit(group.name, tuple(inputs), tuple(outputs), into_buffers=kind.into_buffers,
                aliases=not kind.into_buffers and node.opdef.may_alias)


class TritonExecutor:
    """Runs kernel groups with their step functions (Triton kernels, ATen for the rest)."""

    name = "triton"

    def __init__(self, graph: Graph, groups: Sequence[KernelGroup],
                 fns: Sequence[Callable[..., object]], *, cudagraphs: bool = False) -> None:
        self.graph = graph
        self.groups = list(groups)
        self.cudagraphs = cudagraphs
        self.schedule = Schedule(graph, [group_unit(g) for g in self.groups])
        self.steps = self.schedule.bind(fns)
        self._graph_cache: dict[tuple, tuple] = {}

    @property
    def planned_bytes(self) -> int:
        """Bytes of the shared intermediate buffers."""
        return self.schedule.plan.nbytes

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs``; returns the output tensors."""
        if self.cudagraphs and inputs and all(t.is_cuda for t in inputs):
            return self._run_cudagraph(inputs)
        return self._run(inputs)

    def _run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        device = inputs[0].device if inputs else torch.device("cpu")
        return self.schedule.run(self.steps, inputs, self.schedule.arena(device))

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
