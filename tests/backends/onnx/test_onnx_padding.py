"""ONNX lowerings of the padding-removal ops (token_offsets, pack_tokens, unpack_tokens)
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
