"""The cuda target's weight-only linears (``linear_weight_only``: int4 packed two per byte,
or int8, groupwise scales) on the Triton kernel that dequantizes inside its K loop: packing,
numerics against the IR op under the interpreter, the kind's claim and lowering, and
ahead-of-time builds for sm_80 / sm_90a (no GPU needed)."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.api import kernel_graph
from accel.backends.triton import aot
from accel.backends.triton.kernels.weight_only import (
    WeightOnlyOperands,
    pack_int4,
    unpack_int4,
    weight_only_node_fn,
)
from accel.backends.triton.kinds import BY_NAME, KINDS
from accel.backends.triton.partition import partition
from accel.errors import AccelValueError
from accel.ir.graph import Node, Value
from accel.ir.ops.quant import linear_weight_only
from accel.ir.types import TensorType
from accel.models import get_model
from accel.testing import run_graph

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 2e-2}


def _node(x: torch.Tensor, w_q: torch.Tensor, scales: torch.Tensor, bits: int, group: int,
          bias: torch.Tensor | None, zeros: torch.Tensor | None = None) -> Node:
    ins = [("x", x), ("w_q", w_q), ("scales", scales), ("b", bias), ("z", zeros)]
    vals = tuple(Value(n, TensorType(t.shape, t.dtype, "cpu")) if t is not None else None
                 for n, t in ins)
    out = Value("y", TensorType((*x.shape[:-1], w_q.shape[0]), x.dtype, "cpu"))
    return Node("linear_weight_only", vals, {"bits": bits, "group_size": group}, (out,), "fc",
                {})


def test_int4_packing_round_trips_two_codes_per_byte() -> None:
    w_q = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 2)  # [3, 32], every int4 value
    packed = pack_int4(w_q)
    assert packed.dtype == torch.uint8 and packed.shape == (16, 3)
    assert packed[0, 0].item() == (0 + 8) * 0 + ((-8 + 8) | ((-7 + 8) << 4))
    assert torch.equal(unpack_int4(packed), w_q)


@pytest.mark.parametrize(("bits", "group", "shape", "dtype", "bias"), [
    (4, 32, (5, 64, 24), torch.float32, True),   # several groups, ragged M and N tiles
    (4, 32, (5, 64, 24), torch.float32, "zeros"),  # asymmetric groups, no bias
    (8, 16, (3, 64, 20), torch.float16, "zeros"),
    (4, 0, (3, 96, 40), torch.float32, False),   # one group per row, K not a tile multiple
    (4, 16, (2, 7, 48, 17), torch.float16, True),  # 3-d activation, odd N
    (4, 32, (4, 64, 32), torch.bfloat16, True),
    (8, 32, (7, 64, 20), torch.float32, True),
    (8, 0, (2, 48, 17), torch.bfloat16, False),
])
def test_kernel_matches_the_ir_op(bits: int, group: int, shape: tuple[int, ...],
                                  dtype: torch.dtype, bias: bool | str) -> None:
    torch.manual_seed(0)
    *lead, k, n = shape
    lo, hi = (-8, 8) if bits == 4 else (-128, 128)
    w_q = torch.randint(lo, hi, (n, k), dtype=torch.int8)
    scales = torch.rand(n, k // (group or k)) * 0.05 + 0.01
    x = torch.randn(*lead, k).to(dtype)
    b = torch.randn(n) if bias is True else None
    z = torch.randint(lo, hi, scales.shape, dtype=torch.int8) if bias == "zeros" else None
    got = weight_only_node_fn(_node(x, w_q, scales, bits, group, b, z))(x, w_q, scales, b, z)
    want = linear_weight_only(x.float(), w_q, scales, b, z, bits=bits, group_size=group)
    assert got.dtype == dtype and got.shape == want.shape
    torch.testing.assert_close(got.float(), want, rtol=TOL[dtype], atol=TOL[dtype] * 10)


def test_values_outside_int4_are_refused_naming_the_node() -> None:
    w_q = torch.full((4, 8), 9, dtype=torch.int8)
    node = _node(torch.randn(2, 8), w_q, torch.ones(4, 1), 4, 0, None)
    with pytest.raises(AccelValueError, match=r"node fc says bits=4.*\[9, 9\]"):
        WeightOnlyOperands.prepare(node, w_q, torch.ones(4, 1), None)


@pytest.mark.parametrize("mode", ["int4-weight-only,group_size=32", "int8-weight-only",
                                  "int4-weight-only"])
def test_cuda_target_runs_weight_only_linears_on_the_kernel(mode: str) -> None:
    model, inputs = get_model("vit_small_test", depth=1)
    with pytest.warns(UserWarning) if "int4" in mode else _nothing():
        compiled = accel.compile(model, inputs, pipeline=f"quantize{{mode={mode}}}",
                                 target="cuda", options={"interpret": True})
    nodes = [n for n in compiled.graph.nodes if n.op == "linear_weight_only"]
    assert nodes
    groups = partition(compiled.graph, KINDS)
    assert sum(g.kind is BY_NAME["weight_only"] for g in groups) == len(nodes)
    lines = [line for line in compiled.report.lowering if line.startswith("triton weight_only ")]
    assert len(lines) == len(nodes)
    with torch.no_grad():
        out = compiled(*inputs)
    (ref,) = run_graph(compiled.graph, inputs)
    out = out[0] if isinstance(out, (tuple, list)) else out
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


class _nothing:  # noqa: N801 - a null context for the parametrized warning check
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("precision", [None, "tf32"])
def test_kernels_compile_clean_ahead_of_time(dtype: str, precision: str | None) -> None:
    if precision and dtype != "fp32":
        pytest.skip("fp32_precision only changes float32 dots")
    model, inputs = get_model("vit_small_test", depth=1)
    graph, inputs = kernel_graph(model, inputs, "quantize{mode=int4-weight-only,group_size=32}",
                                 dtype)
    for arch in ("sm_80", "sm_90a"):
        launches = aot.record(graph, inputs, arch, fp32_precision=precision)
        infos = [i for i in aot.compile_launches(launches, arch) if i.kind == "weight_only"]
        assert infos, arch
        for i in infos:
            assert i.ok, (arch, i.config, i.problems())
            if arch == "sm_90a" and dtype != "fp32":
                assert i.tensor_cores == "wgmma", (i.config, i.tensor_cores)
            if dtype == "fp32" and precision is None:
                assert i.tensor_cores == "none"  # ieee fp32: CUDA cores, as torch's default
