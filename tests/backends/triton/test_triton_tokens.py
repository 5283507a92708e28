"""The Triton token-reduction kernels (ToMe merge, EViT prune, Token Transforming) under
TRITON_INTERPRET=1 against
the IR ops, their partitioning, and the cuda target end to end on a small ViT."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.backends.triton.executor import TritonExecutor
from accel.backends.triton.kernels import tokens as triton_tokens
from accel.backends.triton.kinds import BY_NAME, KINDS
from accel.backends.triton.partition import partition
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Rewriter
from accel.ir.ops import tokens
from accel.ir.types import TensorType
from accel.models import get_model

# dtype tolerances: the kernels accumulate in fp32, the reference rounds x·size in the dtype
TOL = {torch.float32: (1e-6, 1e-6), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
SHAPES = [(2, 11, 8, 3, 1), (3, 16, 20, 5, 0), (1, 9, 70, 4, 2), (2, 12, 33, 0, 1),
          (2, 13, 16, 6, 1)]  # (B, N, C, r, protected); r=6 merges every A token


def _inputs(b: int, n: int, c: int, dtype: torch.dtype, with_size: bool
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = torch.randn(b, n, c).to(dtype)
    size = torch.randint(1, 5, (b, n, 1)).to(dtype) if with_size else None
    return x, size


def _close(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor],
           dtype: torch.dtype) -> None:
    rtol, atol = TOL[dtype]
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("with_size", [False, True])
@pytest.mark.parametrize("b,n,c,r,p", SHAPES)
def test_bipartite_merge_kernel_matches_op(b: int, n: int, c: int, r: int, p: int,
                                           with_size: bool, dtype: torch.dtype) -> None:
    x, size = _inputs(b, n, c, dtype, with_size)
    metric = torch.randn(b, n, 6).to(dtype)
    got = triton_tokens.bipartite_merge(x, metric, size, r=r, protected=p)
    _close(got, tokens.bipartite_merge(x, metric, size, r=r, protected=p), dtype)


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("with_size", [False, True])
@pytest.mark.parametrize("b,n,c,keep,p,fuse", [(2, 11, 8, 4, 1, True), (3, 16, 70, 7, 0, True),
                                               (1, 9, 20, 3, 2, False), (2, 10, 8, 9, 1, True)])
def test_attentive_prune_kernel_matches_op(b: int, n: int, c: int, keep: int, p: int,
                                           fuse: bool, with_size: bool,
                                           dtype: torch.dtype) -> None:
    x, size = _inputs(b, n, c, dtype, with_size)
    attn = torch.rand(b, n).softmax(-1).to(dtype)
    got = triton_tokens.attentive_prune(x, attn, size, keep=keep, protected=p, fuse=fuse)
    want = tokens.attentive_prune(x, attn, size, keep=keep, protected=p,
                                  fuse=fuse and n - p > keep)
    _close(got, want, dtype)


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("with_size", [False, True])
@pytest.mark.parametrize("b,n,c,keep,p,select,k", [
    (2, 11, 8, 5, 1, "attention", 3), (3, 16, 70, 9, 0, "attention", 1),
    (1, 9, 20, 8, 1, "attention", 4), (2, 13, 33, 7, 1, "bipartite", 2),
    (2, 12, 16, 6, 2, "bipartite", 8)])  # keep = all (no sources); k above the candidates
def test_token_transform_kernel_matches_op(b: int, n: int, c: int, keep: int, p: int,
                                           select: str, k: int, with_size: bool,
                                           dtype: torch.dtype) -> None:
    x, size = _inputs(b, n, c, dtype, with_size)
    metric, imp = torch.randn(b, n, 6).to(dtype), torch.rand(b, n).softmax(-1).to(dtype)
    kw = {"keep": keep, "protected": p, "select": select, "k": k, "tau": 0.2}
    got = triton_tokens.token_transform(x, metric, size, imp, **kw)
    rtol, atol = TOL[dtype]
    want = tokens.token_transform(x, metric, size, imp, **kw)
    for g, w in zip(got, want, strict=True):  # sizes up to ~N: a relative tolerance
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=4 * rtol, atol=atol)


def test_merge_writes_preallocated_outputs_and_reads_strided_tokens() -> None:
    base = torch.randn(2, 20, 24)
    x = base[:, 3:14, ::2]  # [2, 11, 12], non-contiguous
    metric, size = torch.randn(2, 11, 5), torch.randint(1, 4, (2, 11, 1)).float()
    out, out_size = torch.empty(2, 7, 12), torch.empty(2, 7, 1)
    got = triton_tokens.bipartite_merge(x, metric, size, r=4, protected=1, out=out,
                                        out_size=out_size)
    assert got[0].data_ptr() == out.data_ptr() and got[1].data_ptr() == out_size.data_ptr()
    _close(got, tokens.bipartite_merge(x, metric, size, r=4, protected=1), torch.float32)


def _merge_graph(dtype: torch.dtype) -> Graph:
    """x, metric, size -> bipartite_merge; only the merged tokens are returned."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 9, 8), dtype, "cpu"))
    metric = rw.add_input("metric", TensorType((2, 9, 4), torch.float32, "cpu"))
    size = rw.add_input("size", TensorType((2, 9, 1), dtype, "cpu"))
    node = rw.node("bipartite_merge", x, metric, size, r=3, protected=1, name="merge")
    rw.outputs = [node.outputs[0]]
    return rw.finish()


def test_partition_claims_float_token_ops_and_executor_runs_them() -> None:
    graph = _merge_graph(torch.float32)
    (group,) = partition(graph, KINDS)
    assert group.kind is BY_NAME["token"] and group.outputs == (graph.outputs[0],)
    x, metric = torch.randn(2, 9, 8), torch.randn(2, 9, 4)
    size = torch.randint(1, 4, (2, 9, 1)).float()
    step = group.kind.launch(graph, group, None)
    (out,) = TritonExecutor(graph, [group], [step]).run([x, metric, size])  # sizes to scratch
    want, _ = tokens.bipartite_merge(x, metric, size, r=3, protected=1)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    assert [g.kind for g in partition(_merge_graph(torch.int32), KINDS)] == [BY_NAME["aten"]]


def test_node_fn_rejects_other_ops() -> None:
    graph = _merge_graph(torch.float32)
    rw = Rewriter(graph)
    rw.outputs = [rw.op("relu", graph.outputs[0])]
    relu = rw.finish().find("relu")[0]
    with pytest.raises(AccelValueError, match="token kernel"):
        triton_tokens.token_node_fn(relu)


def test_wrong_output_buffer_is_rejected_before_the_kernel_writes() -> None:
    x, size = _inputs(2, 11, 8, torch.float32, True)
    metric = torch.randn(2, 11, 6)
    bad = torch.empty(2, 11, 8)  # the merge of r=3 returns 8 tokens, not 11
    with pytest.raises(AccelValueError, match=r"bipartite_merge kernel: out is \(2, 11, 8\)"):
        triton_tokens.bipartite_merge(x, metric, size, r=3, protected=1, out=bad)


@pytest.mark.parametrize("r", [-1, 6])
def test_r_outside_the_a_set_is_rejected(r: int) -> None:
    x = torch.randn(1, 11, 8)  # 10 unprotected tokens: 5 in set A
    with pytest.raises(AccelValueError, match=rf"bipartite_merge: r={r} must be in \[0, 5\]"):
        tokens.bipartite_merge(x, x, r=r, protected=1)


@pytest.mark.parametrize("pipeline,op", [("default,tome{r=2}", "bipartite_merge"),
                                         ("default,prune-tokens{keep=0.5}", "attentive_prune"),
                                         ("default,token-transform{r=3}", "token_transform"),
                                         ("default,token-transform{r=2,select=bipartite,k=2}",
                                          "token_transform")])
def test_vit_token_reduction_on_cuda_target_matches_reference(pipeline: str, op: str) -> None:
    model, inputs = get_model("vit_small_test", batch_size=2)
    compiled = accel.compile(model, inputs, pipeline=pipeline, target="cuda",
                             options={"interpret": True})
    reference = accel.compile(model, inputs, pipeline=pipeline, target="reference")
    with torch.no_grad():
        out, want = compiled(*inputs), reference(*inputs)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    nodes = compiled.graph.find(op)
    assert nodes
    token_groups = [g for g in partition(compiled.graph, KINDS) if g.kind is BY_NAME["token"]]
    assert sorted(g.nodes[0].name for g in token_groups) == sorted(n.name for n in nodes)
    lines = compiled.report.lowering
    assert sum(line.startswith("triton token ") and line.endswith(f": {op}")
               for line in lines) == len(nodes)
    assert not any(line.startswith("left to aten: ") and op in line for line in lines)
