"""The cuda target's quantized and 2:4-sparse linears: int8 linears on the Triton int8 kernel
(under the interpreter), the semi-structured sparsity plan (fake capabilities), and the real
sparse conversion on a CUDA device."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.backends.triton.kernels.int8 import int8_linear_node_fn
from accel.backends.triton.kernels.sparse24 import (
    DENSE_REASON,
    semi_structured_plan,
    sparse_linear_fn,
)
from accel.backends.triton.kinds import BY_NAME, KINDS
from accel.backends.triton.partition import partition
from accel.frontend import capture
from accel.ir.graph import Graph, Node, Value
from accel.ir.ops.quant import linear_int8_static, quantize_per_channel
from accel.ir.types import TensorType
from accel.models import get_model
from accel.testing import run_graph


def test_int8_dynamic_vit_runs_int8_kernels_and_matches_reference() -> None:
    model, inputs = get_model("vit_small_test", depth=1)
    compiled = accel.compile(model, inputs, pipeline="quantize{mode=int8-dynamic}",
                             target="cuda", options={"interpret": True})
    graph = compiled.graph
    int8_nodes = [n for n in graph.nodes if n.op == "linear_int8_dynamic"]
    assert int8_nodes
    groups = partition(graph, KINDS)
    assert sum(g.kind is BY_NAME["int8_linear"] for g in groups) == len(int8_nodes)
    with torch.no_grad():
        out = compiled(*inputs)
    (ref,) = run_graph(graph, inputs)
    out = out[0] if isinstance(out, (tuple, list)) else out
    err = (out - ref).abs().max().item()
    assert err <= 1e-3 * max(1.0, ref.abs().max().item()), err
    lines = compiled.report.lowering
    int8_lines = [line for line in lines if line.startswith("triton int8_linear ")]
    assert len(int8_lines) == len(int8_nodes)


def test_int8_static_node_fn_matches_the_ir_op() -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 32), torch.randn(24, 32), torch.randn(24)
    w_q, s_w = quantize_per_channel(w)
    vals = [Value(nm, TensorType(t.shape, t.dtype, "cpu")) for nm, t in
            (("x", x), ("w_q", w_q), ("s_w", s_w), ("b", b))]
    out_v = Value("y", TensorType((2, 5, 24), torch.float32, "cpu"))
    for zp in (0, 7):
        node = Node("linear_int8_static", tuple(vals), {"x_scale": 0.03, "x_zero_point": zp},
                    (out_v,), "fc", {})
        got = int8_linear_node_fn(node)(x, w_q, s_w, b)
        want = linear_int8_static(x, w_q, s_w, b, x_scale=0.03, x_zero_point=zp)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_int8_launcher_prepares_the_weight_side_once_at_lowering() -> None:
    """The kind's launcher casts scales and bias and sums the weight rows at lowering: the
    step then ignores the weight tensors it is handed (here garbage) and still matches."""
    model = torch.nn.Sequential(torch.nn.Linear(32, 24), torch.nn.GELU()).eval()
    x = torch.randn(3, 32)
    compiled = accel.compile(model, x, "default,quantize{mode=int8-dynamic}", target="reference")
    graph = compiled.graph
    (group,) = [g for g in partition(graph, KINDS) if g.kind is BY_NAME["int8_linear"]]
    step = group.kind.launch(graph, group, None)
    node = group.nodes[0]
    ins = [x if v is node.inputs[0] else (None if v is None else torch.zeros_like(graph.const(v)))
           for v in node.inputs]
    out = torch.empty(3, 24)
    step(ins, [out])
    want = int8_linear_node_fn(node)(x, *(graph.const(v) if v is not None else None
                                          for v in node.inputs[1:]))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def _sparse_mlp(dtype: torch.dtype, device: str = "cpu", n: int = 64, k: int = 128
                ) -> tuple[Graph, tuple[torch.Tensor]]:
    """An MLP whose first linear's weight is 2:4-pruned and annotated like ``sparsify``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(k, n), torch.nn.ReLU(), torch.nn.Linear(n, 8))
    with torch.no_grad():
        w = model[0].weight
        w.mul_(torch.tensor([1.0, 0.0, 1.0, 0.0]).repeat(n, k // 4))
    model = model.to(device=device, dtype=dtype).eval()
    inputs = (torch.randn(32, k, device=device, dtype=dtype),)
    graph = capture(model, inputs)
    first = next(nd for nd in graph.nodes if nd.op == "linear")
    rw = graph.rewriter()
    rw.annotate(first.inputs[1], sparsity="2:4")
    return rw.finish(), inputs


def test_semi_structured_plan_needs_sm80_and_half_precision() -> None:
    half, _ = _sparse_mlp(torch.float16)
    fp32, _ = _sparse_mlp(torch.float32)
    chosen, note = semi_structured_plan(half, (8, 0))
    assert [n.op for n in chosen] == ["linear"] and "semi-structured" in note
    assert chosen[0].inputs[1].annotations["sparsity"] == "2:4"
    for graph, cap in ((half, (7, 5)), (half, None), (fp32, (9, 0))):
        chosen, note = semi_structured_plan(graph, cap)
        assert chosen == [] and DENSE_REASON in note and "x1 run dense" in note
    plain = capture(torch.nn.Linear(8, 4), (torch.randn(2, 8),))
    assert semi_structured_plan(plain, (9, 0)) == ([], None)


def test_cuda_target_without_gpu_runs_2of4_dense_with_a_note() -> None:
    _, inputs = _sparse_mlp(torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 8)).eval()
    compiled = accel.compile(model, inputs, pipeline="sparsify", target="cuda",
                             options={"interpret": True})
    assert any(DENSE_REASON in line for line in compiled.report.lowering)
    with torch.no_grad():
        (ref,) = run_graph(compiled.graph, inputs)
        out = compiled(*inputs)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_sparse_linear_fn_on_cuda_matches_dense() -> None:
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("2:4 semi-structured kernels need sm80+")
    graph, inputs = _sparse_mlp(torch.float16, "cuda")
    chosen, _ = semi_structured_plan(graph, torch.cuda.get_device_capability())
    (node,) = chosen
    fn = sparse_linear_fn(graph, node)
    w, b = graph.const(node.inputs[1]), graph.const(node.inputs[2])
    torch.testing.assert_close(fn(inputs[0], w, b), torch.nn.functional.linear(inputs[0], w, b),
                               rtol=1e-2, atol=1e-2)


@pytest.mark.cuda
def test_cuda_target_runs_2of4_linears_on_semi_structured_kernels() -> None:
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("2:4 semi-structured kernels need sm80+")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 64)).cuda().half().eval()
    inputs = (torch.randn(32, 128, device="cuda", dtype=torch.float16),)
    compiled = accel.compile(model, inputs, pipeline="sparsify", target="cuda")
    assert any("on semi-structured kernels" in line for line in compiled.report.lowering)
    with torch.no_grad():
        (ref,) = run_graph(compiled.graph, inputs)
        out = compiled(*inputs)
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-2)
