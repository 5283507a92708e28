"""Ops whose edge-case semantics a lowering can silently get wrong, checked end to end against
eager through every path a user takes: the reference target, the default cpu target and the
exported ONNX model in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import accel


class SafeSoftmax(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._safe_softmax(x, -1)


class CausalSDPA(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class MaskedSDPA(torch.nn.Module):
    def forward(self, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, q, q, attn_mask=mask)


def _every_path(model: torch.nn.Module, inputs: tuple, tmp_path) -> None:  # noqa: ANN001
    ref = model(*inputs)
    for target in ("reference", "cpu"):
        out = accel.compile(model, inputs, target=target)(*inputs)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5,
                                   msg=lambda m, t=target: f"{t}: {m}")
    path = tmp_path / "m.onnx"
    accel.export_onnx(model, inputs, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs)})
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-5, rtol=1e-5, err_msg="onnx")


def test_safe_softmax_gives_zero_for_all_masked_rows(tmp_path) -> None:  # noqa: ANN001
    x = torch.randn(4, 6)
    x[1] = float("-inf")      # all masked: 0, where softmax gives NaN
    x[2, :3] = float("-inf")  # partly masked: an ordinary softmax
    assert SafeSoftmax()(x)[1].eq(0).all()
    _every_path(SafeSoftmax(), (x,), tmp_path)


@pytest.mark.parametrize(("lq", "lk"), [(3, 6), (1, 6), (6, 6), (6, 3)])
@pytest.mark.parametrize("heads", [(), (2,)])
def test_causal_sdpa_is_top_left_aligned(lq: int, lk: int, heads: tuple, tmp_path) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(lq * 10 + lk)
    q, k, v = (torch.randn(3, *heads, n, 8, generator=g) for n in (lq, lk, lk))
    _every_path(CausalSDPA(), (q, k, v), tmp_path)


def test_sdpa_fully_masked_rows_give_zero(tmp_path) -> None:  # noqa: ANN001
    q = torch.randn(2, 2, 5, 8)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[:, :, 3] = False
    assert MaskedSDPA()(q, mask)[:, :, 3].eq(0).all()
    _every_path(MaskedSDPA(), (q, mask), tmp_path)


class SqueezeNone(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.squeeze(x, ())  # an empty dim list squeezes nothing


def test_squeeze_with_no_dims_is_the_identity(tmp_path) -> None:  # noqa: ANN001
    x = torch.randn(1, 3, 1, 1)
    assert SqueezeNone()(x).shape == (1, 3, 1, 1)
    _every_path(SqueezeNone(), (x,), tmp_path)


@pytest.mark.parametrize(("fn", "lowers"), [
    (lambda x, i: torch.index_select(x, 0, i), True),  # the one valid index selects x
    (lambda x, i: torch.gather(x, 0, i), False),
])
def test_index_ops_on_a_0d_tensor(fn: object, lowers: bool) -> None:
    x = torch.tensor(3.5)
    i = torch.tensor([0]) if "index_select" in fn.__code__.co_names else torch.tensor(0)
    compiled = accel.compile(fn, (x, i), target="reference")
    torch.testing.assert_close(compiled(x, i), fn(x, i))
    assert bool(compiled.graph.fallbacks()) is not lowers


class PoolWithIndices(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.max_pool2d(x, 2, return_indices=True)


class LayerNormStats(torch.nn.Module):
    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.native_layer_norm(x, (8,), w, None, 1e-5)


class BatchNormStats(torch.nn.Module):
    def forward(self, x: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> tuple:
        return torch.ops.aten._native_batch_norm_legit_no_training(x, None, None, m, v, 0.1,
                                                                    1e-5)


@pytest.mark.parametrize(("model", "inputs"), [
    (PoolWithIndices(), (torch.randn(1, 2, 4, 4),)),
    (LayerNormStats(), (torch.randn(3, 8), torch.randn(8))),
])
def test_multi_output_op_lowers_every_output(model: torch.nn.Module, inputs: tuple) -> None:
    compiled = accel.compile(model, inputs, target="reference")
    for out, ref in zip(compiled(*inputs), model(*inputs), strict=True):
        torch.testing.assert_close(out, ref)
    assert not compiled.graph.fallbacks()


def test_multi_output_op_whose_extra_outputs_are_used_falls_back_whole() -> None:
    model, inputs = BatchNormStats(), (torch.randn(2, 3, 4), torch.randn(3), torch.rand(3) + 1)
    compiled = accel.compile(model, inputs, target="reference")
    for out, ref in zip(compiled(*inputs), model(*inputs), strict=True):
        torch.testing.assert_close(out, ref)
    (node,) = compiled.graph.fallbacks()
    assert "has no IR lowering" in node.meta["fallback_reason"]


@pytest.mark.parametrize("fn", [
    lambda a, b: torch.meshgrid(a, indexing="xy"),  # Tensor[] of one, through a fallback
    lambda a, b: torch.gradient(a),
    lambda a, b: torch.meshgrid(a, b, indexing="ij"),
])
def test_list_outputs_of_fallbacks_keep_their_structure(fn: object) -> None:
    class M(torch.nn.Module):
        def forward(self, a, b):  # noqa: ANN001, ANN202
            return fn(a, b)

    a, b = torch.randn(5), torch.randn(3)
    expected = M()(a, b)
    out = accel.compile(M(), (a, b), target="reference")(a, b)
    assert type(out) is type(expected) and len(out) == len(expected)
    for o, e in zip(out, expected, strict=True):
        assert isinstance(o, torch.Tensor)
        torch.testing.assert_close(o, e)


class _Fn(torch.nn.Module):
    def __init__(self, fn: object) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):  # noqa: ANN001, ANN202
        return self.fn(x)


@pytest.mark.parametrize("fn", [
    torch.logical_not,  # of floats: x == 0
    lambda x: torch.all(x, dim=1),
    lambda x: torch.any(x > 0.5),
    lambda x: torch.all(x > -0.5, dim=0, keepdim=True),
])
def test_boolean_ops_export_valid_onnx(fn: object, tmp_path) -> None:  # noqa: ANN001
    x = torch.randn(3, 4)
    x[0, 1] = 0.0
    _every_path(_Fn(fn), (x,), tmp_path)


@pytest.mark.parametrize("fn", [
    lambda x: torch.clamp(x, min=0.0),  # was clamped to [0, 1]: hardtanh's defaults leaked
    lambda x: torch.clamp(x, max=0.5),
    lambda x: torch.clip(x, -0.25),
    F.hardtanh,
    lambda x: F.hardtanh(x, -2.0, 0.5),
])
def test_clamp_bounds_follow_torch_defaults(fn: object, tmp_path) -> None:  # noqa: ANN001
    _every_path(_Fn(fn), (torch.randn(4, 5) * 3,), tmp_path)
