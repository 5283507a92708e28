"""ONNX lowerings of the data-dependent ops (nonzero, token_offsets, pack_tokens, unpack_tokens)
against their references, in onnxruntime: one exported graph serves masks with any number
of real tokens (the counted ``tokens`` axis is dynamic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_onnx_ops import run_onnx

from accel.backends.onnx.exporter import graph_to_onnx
from accel.ir.graph import Graph, Rewriter
from accel.ir.interpreter import interpret
from accel.ir.types import TensorType


def packed_graph(mask_dtype: torch.dtype, b: int = 3, s: int = 5, c: int = 4) -> Graph:
    """x [B,S,C], mask [B,S] -> unpack(pack(x) * 2 + count-sized bias), and the offsets."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType((b, s, c), torch.float32))
    mask = rw.add_input("mask", TensorType((b, s), mask_dtype))
    rw.add_counted_symbol("tokens", mask, hint=b * s, hi=b * s)
    offsets = rw.op("token_offsets", mask, count="tokens")
    packed = rw.op("pack_tokens", x, offsets)
    doubled = rw.op("mul", packed, rw.const(torch.tensor(2.0)))
    rw.set_outputs([rw.op("unpack_tokens", doubled, offsets, mask), offsets])
    return rw.finish()


@pytest.mark.parametrize("mask_dtype", [torch.int64, torch.bool, torch.float32])
@pytest.mark.parametrize("pattern", ["right", "scattered", "all-real", "one-row-empty"])
def test_padding_ops_onnx_match_reference(mask_dtype: torch.dtype, pattern: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g)
    mask = {"right": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]),
            "scattered": torch.tensor([[0, 1, 0, 1, 1], [1, 0, 1, 0, 1], [1, 1, 0, 0, 1]]),
            "all-real": torch.ones(3, 5, dtype=torch.long),
            "one-row-empty": torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 0]]),
            }[pattern].to(mask_dtype)
    graph = packed_graph(mask_dtype)
    want, want_offsets = interpret(graph, (x, mask))
    real = mask != 0
    torch.testing.assert_close(want[real], 2 * x[real])
    assert not want[~real].any()
    assert want_offsets.tolist() == torch.nonzero(real.reshape(-1)).reshape(-1).tolist()
    got, got_offsets = run_onnx(graph_to_onnx(graph), [x, mask])
    np.testing.assert_array_equal(got_offsets, want_offsets.numpy())
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=0)


def test_counted_symbol_is_read_from_the_mask() -> None:
    graph = packed_graph(torch.int64)
    assert graph.count_sources() == {"tokens": 1}
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    assert graph.call_sizes((torch.zeros(3, 5, 4), mask)) == {"tokens": 3}
    assert "tokens = int(torch.count_nonzero(mask))" in graph.python()


def nonzero_graph(shape: tuple[int, ...], dtype: torch.dtype) -> Graph:
    """x -> nonzero(x > 0.5): a count of a value the graph computes; and a count-sized sum."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType(shape, dtype))
    mask = rw.op("gt", x, rw.const(torch.tensor(0.5, dtype=dtype)))
    n = 1
    for d in shape:
        n *= d
    rw.add_counted_symbol("nnz", mask, hint=n, hi=max(n, 2), lo=0)
    coords = rw.op("nonzero", mask, count="nnz")
    rw.set_outputs([coords, rw.op("sum", coords, dims=(coords.type.rank - 1,))])
    return rw.finish()


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (2, 3, 2)])
def test_nonzero_onnx_matches_reference_at_every_count(shape: tuple[int, ...]) -> None:
    graph = nonzero_graph(shape, torch.float32)
    assert graph.computed_counts() == {"nnz": graph.nodes[0].outputs[0]}
    model = graph_to_onnx(graph)
    assert [d.dim_param or d.dim_value for d in
            model.graph.output[0].type.tensor_type.shape.dim] == ["nnz", len(shape)]
    g = torch.Generator().manual_seed(0)
    for x in (torch.rand(shape, generator=g), torch.zeros(shape), torch.ones(shape)):
        want = interpret(graph, (x,))
        assert want[0].tolist() == torch.nonzero(x > 0.5).tolist()
        got = run_onnx(model, [x])
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b.numpy())
