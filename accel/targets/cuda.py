"""The ``cuda`` target: the Triton backend on CUDA GPUs (fused kernels, ATen for the rest).

Without a CUDA device (or with inputs not on CUDA) the graph runs on the aten backend and
the report says so. Options: ``cudagraphs`` (replay a captured CUDA graph) and
``interpret`` (internal, for tests: run the same kernels on CPU tensors under
``TRITON_INTERPRET=1``). Generated kernels are written to the compile's ``dump`` directory.
"""

from __future__ import annotations

import torch

from accel import env
from accel.backends.aten import AtenExecutor
from accel.backends.triton.kernel import Device
from accel.backends.triton.kernels.sparse24 import semi_structured_plan
from accel.backends.triton.lower import lower_triton
from accel.errors import AccelValueError
from accel.ir.graph import Graph
from accel.runtime import Executable
from accel.targets import LowerContext, register_target

OPTIONS = {"cudagraphs": "replay the schedule as one captured CUDA graph (bool)",
           "fp32_precision": "float32 matmul/attention dots: ieee (exact, no tensor cores), "
                             "tf32 or tf32x3; default follows "
                             "torch.get_float32_matmul_precision() (highest: ieee; high, "
                             "medium: tf32, as Inductor)",
           "interpret": "tests only: run the kernels in Triton's CPU interpreter (bool)"}


FP32_PRECISIONS = ("ieee", "tf32", "tf32x3")


def fp32_precision(option: object = None) -> str:
    """The ``input_precision`` of float32 dots: the option, or torch's float32 matmul
    precision setting (``highest``: ieee; ``high``/``medium``: tf32, as Inductor)."""
    if option is None:
        return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    if option not in FP32_PRECISIONS:
        raise AccelValueError(f"target 'cuda' option fp32_precision={option!r}: use one of "
                              f"{', '.join(FP32_PRECISIONS)}")
    return str(option)


@register_target("cuda", "CUDA: Triton kernels for fused groups, ATen for the rest", OPTIONS)
def lower_cuda(graph: Graph, ctx: LowerContext) -> Executable:
    """Lower for CUDA inference on the Triton backend, or aten without a CUDA device."""
    interpret = bool(ctx.options.get("interpret", False))
    if interpret and not env.triton_interpret():
        raise AccelValueError(
            "target 'cuda' with interpret=True needs TRITON_INTERPRET=1 in the environment "
            "before triton is imported (tests/conftest.py sets it)")
    on_cuda = any(v.type.device == "cuda" for v in graph.inputs)
    real_cuda = on_cuda and torch.cuda.is_available()
    if not interpret and not real_cuda:
        _, sparse_note = semi_structured_plan(graph, None)
        if sparse_note:
            ctx.note(sparse_note)
        ctx.note("aten executor: no CUDA device or inputs not on CUDA; Triton lowering "
                 f"skipped ({len(graph)} steps)")
        return AtenExecutor(graph)
    device = Device(torch.cuda.get_device_capability() if real_cuda else None, interpret,
                    fp32_precision=fp32_precision(ctx.options.get("fp32_precision")))
    cudagraphs = bool(ctx.options.get("cudagraphs", False)) and not interpret
    if cudagraphs and graph.is_dynamic:
        ctx.note("cudagraphs off: the graph has symbolic dims (a captured graph fixes its "
                 "buffers' addresses and sizes); compile with static shapes to replay one")
        cudagraphs = False
    return lower_triton(graph, device, cudagraphs=cudagraphs, dump_dir=ctx.dump_dir,
                        note=ctx.note)
