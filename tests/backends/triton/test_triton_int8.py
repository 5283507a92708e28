"""The Triton int8 matmul with fused dequantization, under TRITON_INTERPRET=1 (tiny shapes)."""

from __future__ import annotations

import pytest
import torch

from accel.backends.triton.kernels.int8 import int8_linear_node_fn, int8_matmul_dequant
from accel.ir.graph import Node, Value
from accel.ir.ops.quant import linear_int8_dynamic, quantize_per_channel
from accel.ir.types import TensorType


@pytest.mark.parametrize("m,n,k", [(5, 24, 40), (17, 16, 32)])
def test_fused_dequant_matches_integer_reference(m: int, n: int, k: int) -> None:
    torch.manual_seed(0)
    x_q = torch.randint(-128, 128, (m, k), dtype=torch.int8)
    w_q = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    s_x, s_w, bias = torch.rand(m, 1) + 0.1, torch.rand(n) + 0.1, torch.randn(n)
    zp = torch.randint(-5, 5, (m, 1), dtype=torch.int32)
    out = int8_matmul_dequant(x_q, w_q, s_x, s_w, bias, zp)
    acc = (x_q.double() - zp.double()) @ w_q.double().t()
    torch.testing.assert_close(out, (acc * s_x.double() * s_w.double() + bias).float(),
                               rtol=1e-5, atol=1e-3)
    no_zp = int8_matmul_dequant(x_q, w_q, torch.tensor(0.5), s_w)
    torch.testing.assert_close(no_zp, ((x_q.double() @ w_q.double().t()) * 0.5 * s_w).float(),
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("act", ["per-token", "per-tensor"])
def test_int8_dynamic_node_fn_matches_the_ir_op(act: str) -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 32), torch.randn(16, 32), torch.randn(16)
    w_q, s_w = quantize_per_channel(w)
    vals = tuple(Value(nm, TensorType(t.shape, t.dtype, "cpu"))
                 for nm, t in (("x", x), ("w_q", w_q), ("s_w", s_w), ("b", b)))
    node = Node("linear_int8_dynamic", vals, {"act": act, "symmetric": False},
                (Value("y", TensorType((2, 3, 16), torch.float32, "cpu")),), "fc", {})
    torch.testing.assert_close(int8_linear_node_fn(node)(x, w_q, s_w, b),
                               linear_int8_dynamic(x, w_q, s_w, b, act=act),
                               rtol=1e-5, atol=1e-4)


def test_precomputed_row_sums_and_preallocated_output() -> None:
    torch.manual_seed(0)
    x_q = torch.randint(-128, 128, (6, 32), dtype=torch.int8)
    w_q = torch.randint(-127, 128, (16, 32), dtype=torch.int8)
    s_x, s_w, zp = torch.rand(6, 1) + 0.1, torch.rand(16) + 0.1, torch.full((6, 1), 3)
    out = torch.empty(6, 16)
    res = int8_matmul_dequant(x_q, w_q, s_x, s_w, None, zp,
                              w_sum=w_q.sum(dim=1, dtype=torch.int32).float(), out=out)
    assert res.data_ptr() == out.data_ptr()
    torch.testing.assert_close(res, int8_matmul_dequant(x_q, w_q, s_x, s_w, None, zp))
