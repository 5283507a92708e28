"""ONNX lowerings of the token-reduction ops against their references, in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from test_onnx_ops import one_node_graph, run_onnx

from accel.backends.onnx.exporter import graph_to_onnx
from accel.ir.graph import Rewriter
from accel.ir.ops import tokens
from accel.ir.types import TensorType

TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def _case(dtype: torch.dtype, n: int, c: int, with_size: bool, seed: int
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, c, generator=g).to(dtype)
    guide = torch.randn(2, n, 6, generator=g).to(dtype)
    size = torch.randint(1, 4, (2, n, 1), generator=g).to(dtype) if with_size else None
    return x, guide, size


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("n,r,p,with_size", [(11, 3, 1, True), (12, 5, 0, False),
                                             (13, 6, 2, True), (9, 4, 1, False)])
def test_bipartite_merge_onnx_matches_reference(dtype: torch.dtype, n: int, r: int, p: int,
                                                with_size: bool) -> None:
    x, metric, size = _case(dtype, n, 8, with_size, seed=n + r)
    inputs = [x, metric] + ([size] if size is not None else [])
    graph, runtime, _, _ = one_node_graph("bipartite_merge", inputs, {"r": r, "protected": p})
    proto = graph_to_onnx(graph)
    ops = {node.op_type for node in proto.graph.node}
    assert "ScatterElements" not in ops and "MatMul" in ops  # merged by one-hot MatMuls
    got_x, got_s = run_onnx(proto, runtime)
    want_x, want_s = tokens.bipartite_merge(x, metric, size, r=r, protected=p)
    tol = TOL[dtype]
    np.testing.assert_allclose(got_x.astype(np.float32), want_x.float().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(got_s.astype(np.float32), want_s.float().numpy(), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", list(TOL))
def test_attentive_prune_onnx_matches_reference(dtype: torch.dtype) -> None:
    x, _, size = _case(dtype, 10, 8, True, seed=3)
    attn = torch.rand(2, 10, generator=torch.Generator().manual_seed(4)).softmax(-1).to(dtype)
    graph, runtime, _, _ = one_node_graph("attentive_prune", [x, attn, size],
                                          {"keep": 4, "protected": 1, "fuse": True})
    got_x, got_s = run_onnx(graph_to_onnx(graph), runtime)
    want_x, want_s = tokens.attentive_prune(x, attn, size, keep=4, protected=1)
    tol = TOL[dtype]
    np.testing.assert_allclose(got_x.astype(np.float32), want_x.float().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(got_s.astype(np.float32), want_s.float().numpy(), atol=tol, rtol=tol)


def _transform_graph(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor | None,
                     imp: torch.Tensor | None, attrs: dict):  # noqa: ANN202
    """One token_transform node over graph inputs (size and importance optional)."""
    rw = Rewriter()
    ins = [None if t is None else rw.add_input(f"x{i}", TensorType.of(t))
           for i, t in enumerate((x, metric, size, imp))]
    node = rw.node("token_transform", *ins, **attrs)
    rw.set_outputs(node.outputs)
    return rw.finish(), [t for t in (x, metric, size, imp) if t is not None]


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("n,keep,p,select,k,with_size", [
    (11, 5, 1, "attention", 3, True), (12, 7, 0, "attention", 1, False),
    (13, 6, 2, "bipartite", 2, True), (11, 6, 1, "bipartite", 9, False),
    (10, 9, 1, "attention", 4, True), (9, 8, 1, "bipartite", 2, True)])  # last two: no sources
def test_token_transform_onnx_matches_reference(dtype: torch.dtype, n: int, keep: int, p: int,
                                                select: str, k: int, with_size: bool) -> None:
    x, metric, size = _case(dtype, n, 8, with_size, seed=n + keep)
    imp = (torch.rand(2, n, generator=torch.Generator().manual_seed(n)).softmax(-1).to(dtype)
           if select == "attention" else None)
    attrs = {"keep": keep, "protected": p, "select": select, "k": k, "tau": 0.2}
    graph, runtime = _transform_graph(x, metric, size, imp, attrs)
    got_x, got_s = run_onnx(graph_to_onnx(graph), runtime)
    want_x, want_s = tokens.token_transform(x, metric, size, imp, **attrs)
    tol = TOL[dtype]
    np.testing.assert_allclose(got_x.astype(np.float32), want_x.float().numpy(), atol=tol, rtol=tol)
    np.testing.assert_allclose(got_s.astype(np.float32), want_s.float().numpy(), atol=tol,
                               rtol=2 * tol)


def test_bf16_merge_exports_a_valid_model() -> None:
    # onnxruntime's CPU provider has no bf16 kernels for Mul/MatMul at all, so only validity
    # is checked: the matching runs in fp32 (TopK has no bf16 type in the ONNX spec).
    x, metric, size = _case(torch.bfloat16, 11, 8, True, seed=0)
    graph, _, _, _ = one_node_graph("bipartite_merge", [x, metric, size], {"r": 3, "protected": 1})
    onnx.checker.check_model(graph_to_onnx(graph), full_check=True)
