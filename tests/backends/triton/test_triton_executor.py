"""End to end on the cuda lowering path under the Triton interpreter: partition -> codegen ->
executor on small built-in models against eager; the memory plan; CUDA-only checks."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.backends.triton.executor import TritonExecutor, group_unit
from accel.backends.triton.kinds import KINDS
from accel.backends.triton.partition import partition
from accel.frontend import capture
from accel.models import get_model
from accel.runtime.schedule import Schedule
from accel.testing import assert_matches_eager


def test_vit_small_end_to_end_matches_eager() -> None:
    model, inputs = get_model("vit_small_test", depth=1)
    compiled = accel.compile(model, inputs, target="cuda", options={"interpret": True})
    assert_matches_eager(compiled, model, inputs)
    lines = compiled.report.lowering
    fused = [line.split(": ", 1)[1] for line in lines
             if line.startswith("triton ") and ": " in line]
    assert fused.count("attention") == 1 and fused.count("layer_norm") == 3
    assert "linear + gelu" in fused  # MLP fc1 with its activation
    assert any(line.startswith("left to aten: ") and "conv x1" in line for line in lines)
    assert isinstance(compiled._first.executable, TritonExecutor)


def test_bert_small_end_to_end_matches_eager() -> None:
    model, inputs = get_model("bert_small_test", layers=1)
    compiled = accel.compile(model, inputs, target="cuda", options={"interpret": True})
    assert_matches_eager(compiled, model, inputs)


def test_memory_plan_reuses_buffers_and_keeps_views_alive() -> None:
    model, inputs = get_model("vit_small_test", depth=2)
    graph = capture(model, inputs)
    groups = partition(graph, KINDS)
    buffers = Schedule(graph, [group_unit(g) for g in groups]).plan
    plan, num_buffers = buffers.buffer_of, len(buffers.sizes)
    assert plan and num_buffers < len(plan)  # some buffers are shared
    # a buffer is never handed to a new value while a value (or a view of it) is still read
    step_of = {o: i for i, g in enumerate(groups) for n in g.nodes for o in n.outputs}
    readers: dict = {}
    for i, g in enumerate(groups):
        for v in g.inputs:
            readers.setdefault(v, []).append(i)
    view_ops = {"reshape", "permute", "select", "slice", "expand"}
    for v in graph.nodes:
        if v.op in view_ops and v.inputs[0] in readers:
            readers[v.inputs[0]] += readers.get(v.output, [])
    for a, ba in plan.items():
        for b, bb in plan.items():
            if a is not b and ba == bb and step_of[a] < step_of[b]:
                assert max(readers.get(a, [step_of[a]])) <= step_of[b], (a, b)


def test_planned_buffers_are_allocated_once_and_outputs_are_fresh() -> None:
    model, inputs = get_model("vit_small_test", depth=1)
    compiled = accel.compile(model, inputs, target="cuda", options={"interpret": True})
    ex = compiled._first.executable
    assert isinstance(ex, TritonExecutor) and ex.planned_bytes > 0
    arena = ex.schedule.arena(inputs[0].device)
    ptrs = [b.data_ptr() for b in arena.buffers]
    with torch.no_grad():
        first, second = compiled(*inputs), compiled(*inputs)
    assert ex.schedule.arena(inputs[0].device) is arena  # no re-allocation per call
    assert [b.data_ptr() for b in arena.buffers] == ptrs
    assert first.data_ptr() != second.data_ptr()  # what a call returns is its own memory
    torch.testing.assert_close(first, second)
    assert arena.nbytes == ex.planned_bytes


def test_a_returned_view_of_a_kernel_output_is_not_overwritten_by_the_next_call() -> None:
    """neg runs as a kernel into a planned buffer unless something that may alias it (a
    reshape view here) reaches the outputs: then it is fresh memory on every call."""
    from accel.ir.graph import Rewriter
    from accel.ir.types import TensorType

    rw = Rewriter()
    x = rw.add_input("x", TensorType((4, 8), torch.float32))
    y = rw.op("exp", rw.op("neg", x))
    rw.set_outputs([rw.op("reshape", y, shape=(32,)), rw.op("sum", y, dims=(1,))])
    graph = rw.finish()
    ex = accel.targets.lower(graph, "cuda", accel.targets.LowerContext(options={"interpret": True}))
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    first, _ = ex.run([a])
    keep = first.clone()
    second, _ = ex.run([b])
    torch.testing.assert_close(first, keep)  # not overwritten by the second call
    torch.testing.assert_close(second, torch.exp(-b).reshape(32))


def test_interpret_requires_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    model, inputs = get_model("vit_small_test", depth=1)
    with pytest.raises(accel.errors.AccelError, match="TRITON_INTERPRET=1"):
        accel.compile(model, inputs, target="cuda", options={"interpret": True})


def test_cuda_target_without_cuda_inputs_falls_back_to_aten() -> None:
    model, inputs = get_model("vit_small_test", depth=1)
    compiled = accel.compile(model, inputs, target="cuda")
    assert any("Triton lowering skipped" in line for line in compiled.report.lowering)
    assert_matches_eager(compiled, model, inputs)


@pytest.mark.cuda
@pytest.mark.parametrize("cudagraphs", [False, True])
def test_vit_on_gpu_fp16(cudagraphs: bool) -> None:
    model, inputs = get_model("vit_small_test")
    model = model.cuda().half()
    inputs = tuple(t.cuda().half() for t in inputs)
    compiled = accel.compile(model, inputs, target="cuda", options={"cudagraphs": cudagraphs})
    assert any(line.startswith("triton executor") for line in compiled.report.lowering)
    assert_matches_eager(compiled, model, inputs, atol=2e-2, rtol=2e-2)
    # a second call replays (cudagraphs) with new data
    other = tuple(torch.randn_like(t) for t in inputs)
    assert_matches_eager(compiled, model, other, atol=2e-2, rtol=2e-2)
