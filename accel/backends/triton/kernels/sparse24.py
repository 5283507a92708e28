"""2:4 kind: semi-structured sparse linears on CUDA's sparse tensor-core kernels.

:func:`semi_structured_plan` is a pure decision from the graph and the device capability
(unit-tested with a fake one): it is the kind's ``select``, so the chosen linears are taken
before the matmul kind sees them. :func:`sparse_linear_fn` converts a weight once, at
lowering, with ``torch.sparse.to_sparse_semi_structured`` and returns the step function
(``F.linear`` accepts the converted weight). Linears not chosen run dense on their masked
weights (matmul kind or aten).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from accel.backends.triton.kernel import Args, CompiledKernel, Device, KernelGroup, KernelKind
from accel.backends.triton.partition import Claims
from accel.ir.graph import Graph, Node

SPARSE_DTYPES = (torch.float16, torch.bfloat16)
MIN_CAPABILITY = (8, 0)
DENSE_REASON = "2:4 kernels need CUDA sm80+ and fp16/bf16"
# shapes CUTLASS's semi-structured kernels take for fp16/bf16 weights (rows x cols multiples)
ROW_MULTIPLE, COL_MULTIPLE = 32, 64


def sparse_linears(graph: Graph) -> list[Node]:
    """``linear`` nodes whose constant weight is annotated ``sparsity="2:4"``."""
    return [n for n in graph.nodes
            if n.op == "linear" and graph.is_const(n.inputs[1])
            and n.inputs[1].annotations.get("sparsity") == "2:4"]


def semi_structured_plan(graph: Graph, device_capability: tuple[int, int] | None
                         ) -> tuple[list[Node], str | None]:
    """(2:4 linears to run on the sparse kernels, lowering note or ``None``).

    ``device_capability`` is the CUDA device's ``(major, minor)``, ``None`` without a real
    CUDA device. Linears that do not qualify run dense on their masked weights; the note says
    how many and why.
    """
    nodes = sparse_linears(graph)
    if not nodes:
        return [], None
    if device_capability is None or tuple(device_capability) < MIN_CAPABILITY:
        where = "no CUDA device" if device_capability is None \
            else f"device sm{device_capability[0]}{device_capability[1]}"
        return [], (f"2:4 sparse linears x{len(nodes)} run dense (masked weights): "
                    f"{DENSE_REASON} ({where})")
    chosen, reasons = [], set()
    for n in nodes:
        w = n.inputs[1]
        if w.dtype not in SPARSE_DTYPES or n.inputs[0].dtype != w.dtype:
            reasons.add(f"dtype {str(w.dtype).removeprefix('torch.')}")
        elif w.shape[0] % ROW_MULTIPLE or w.shape[1] % COL_MULTIPLE:
            reasons.add(f"weight shape not a multiple of {ROW_MULTIPLE}x{COL_MULTIPLE}")
        else:
            chosen.append(n)
    note = f"2:4 sparse linears x{len(chosen)} on semi-structured kernels"
    if len(chosen) < len(nodes):
        note += (f"; x{len(nodes) - len(chosen)} run dense (masked weights): {DENSE_REASON} "
                 f"({', '.join(sorted(reasons))})")
    return chosen, note


def sparse_linear_fn(graph: Graph, node: Node) -> Callable[..., torch.Tensor]:
    """Step function ``(x, w, bias?) -> out`` of a 2:4 linear on its converted weight."""
    sparse_w = torch.sparse.to_sparse_semi_structured(graph.const(node.inputs[1]))

    def run(x: torch.Tensor, _dense_w: torch.Tensor, bias: torch.Tensor | None = None
            ) -> torch.Tensor:
        return F.linear(x, sparse_w, bias)
    return run


def _select(graph: Graph, device: Device) -> tuple[list[Node], str | None]:
    return semi_structured_plan(graph, device.capability)


def claim(claims: Claims, node: Node) -> list[Node] | None:
    """A 2:4 linear the plan chose for the sparse kernels."""
    return [node] if node in claims.selected[KIND] else None


def launch(graph: Graph, group: KernelGroup, kernel: CompiledKernel | None) -> Callable:
    """``F.linear`` on the weight converted once, here."""
    return sparse_linear_fn(graph, group.nodes[0])


KIND = KernelKind("sparse24", frozenset({"linear"}), claim, launch, args=Args.NODE,
                  into_buffers=False, select=_select, runs_on="torch.sparse")
