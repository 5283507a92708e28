"""GPTQ and SparseGPT (accel/passes/common/gptq.py) and the passes that use them:
``quantize{method=gptq}``, ``sparsify{method=sparsegpt}``, their composition, and the
end-to-end accuracy warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import accel
import accel.calibration as calibration
from accel.calibration import HessianObserver, hidden_accuracy_loss
from accel.errors import AccelValueError
from accel.ir.ops.quant import dequantize_weight, quantize_grouped
from accel.models import get_model
from accel.passes.common.gptq import block_for, gptq, group_grid, sparsegpt_2_4
from accel.passes.common.linears import float_target_weight
from accel.passes.common.padding import padding_mask_or_none
from accel.passes.sparsify import mask_n_m
from accel.report import PassRecord
from accel.testing import check_pass

# --- a plain reference, straight from the paper ----------------------------------------------


def reference_gptq(w: torch.Tensor, h: torch.Tensor, bits: int, group: int, damp: float = 0.01,
                   keep: torch.Tensor | None = None, asymmetric: bool = False,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTQ (arXiv 2210.17323, Algorithm 1 without lazy batching), in float64, one column at
    a time, keeping the inverse Hessian of the remaining columns explicitly (the OBS
    elimination of eq. 3) instead of reading it off a Cholesky factor."""
    w, h = w.double().clone(), h.double().clone()
    n, k = w.shape
    qmax = 2 ** (bits - 1) - 1
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diag(h).mean() * torch.eye(k, dtype=h.dtype)
    hinv = torch.linalg.inv(h)
    q = torch.zeros(n, k, dtype=torch.int8)
    scales = torch.zeros(n, k // group, dtype=torch.float64)
    zeros = torch.zeros(n, k // group, dtype=torch.float64)
    for i in range(k):
        if i % group == 0:  # a group's scale from the weights as updated so far
            cols = w[:, i:i + group] * (1 if keep is None else keep[:, i:i + group])
            if asymmetric:  # 2^bits levels over [min(w, 0), max(w, 0)], integer zero point
                lo, hi = cols.amin(1).clamp(max=0), cols.amax(1).clamp(min=0)
                sc = (hi - lo).clamp_min(1e-12) / (2 ** bits - 1)
                scales[:, i // group] = sc
                zeros[:, i // group] = (-qmax - 1 - torch.round(lo / sc)).clamp(-qmax - 1, qmax)
            else:
                scales[:, i // group] = cols.abs().amax(1).clamp_min(1e-12) / qmax
        s, z = scales[:, i // group], zeros[:, i // group]
        qi = (torch.round(w[:, i] / s) + z).clamp(-qmax - 1, qmax)
        if keep is not None:
            qi = torch.where(keep[:, i], qi, z)
        q[:, i] = qi.to(torch.int8)
        err = (w[:, i] - (qi - z) * s) / hinv[i, i]
        w[:, i:] -= err[:, None] * hinv[i, i:][None, :]  # OBS update of the remaining weights
        hinv = hinv - hinv[:, i:i + 1] @ hinv[i:i + 1, :] / hinv[i, i]  # eliminate column i
    if asymmetric:
        return q, scales.float(), zeros.to(torch.int8)
    return q, scales.float()


def _problem(n: int = 48, k: int = 128, rows: int = 1024, seed: int = 0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A weight, correlated inputs with uneven feature scales, and their Hessian."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)
    x = (torch.randn(rows, k, generator=g) @ mix) * torch.linspace(0.2, 3, k)
    w = torch.randn(n, k, generator=g)
    h = 2 * x.double().t() @ x.double() / rows
    return w, x, h


def _out_err(x: torch.Tensor, w: torch.Tensor, w_hat: torch.Tensor) -> float:
    return (F.linear(x, w) - F.linear(x, w_hat)).square().sum().item()


# --- the algorithms --------------------------------------------------------------------------


def test_hessian_observer_streams_two_over_n_xtx() -> None:
    x = torch.randn(3, 7, 16)
    obs = HessianObserver()
    obs.update(x[:1])
    obs.update(x[1:])  # batches of different sizes: a running mean, not a mean of means
    rows = x.reshape(-1, 16).double()
    torch.testing.assert_close(obs.hessian(), 2 * rows.t() @ rows / rows.shape[0])
    assert obs.rows == 21 and obs.hessian().shape == (16, 16)
    f32 = HessianObserver(torch.float32)
    f32.update(x)
    assert f32.hessian().dtype == torch.float32
    with pytest.raises(AccelValueError, match="no rows"):
        HessianObserver().hessian()


@pytest.mark.parametrize("bits,group", [(4, 32), (4, 128), (8, 0), (4, 0)])
def test_blocked_gptq_matches_the_column_by_column_reference(bits: int, group: int) -> None:
    w, x, h = _problem()
    g = group or w.shape[1]
    q_ref, s_ref = reference_gptq(w, h, bits, g)
    for block in (128, 48, 16):  # lazy batches of columns: the same arithmetic, reordered
        q, s, _ = gptq(w, h, bits=bits, group_size=group, block=block, dtype=torch.float64)
        assert q.dtype == torch.int8 and s.shape == s_ref.shape
        assert (q != q_ref).float().mean() < 1e-3  # a rounding tie may flip, nothing more
        torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-7)
    w_hat = dequantize_weight(q.float(), s, g)
    torch.testing.assert_close(_out_err(x, w, w_hat),
                               _out_err(x, w, dequantize_weight(q_ref.float(), s_ref, g)),
                               rtol=1e-3, atol=0)
    q32, s32, _ = gptq(w, h, bits=bits, group_size=group)  # the default float32 sweep
    assert _out_err(x, w, dequantize_weight(q32.float(), s32, g)) < \
        1.01 * _out_err(x, w, w_hat)


@pytest.mark.parametrize("group", [32, 0])
def test_asymmetric_gptq_matches_the_reference_and_beats_symmetric(group: int) -> None:
    w, x, h = _problem()
    w = w + 0.7 * w.abs()  # skewed rows: an asymmetric grid has up to 2x the resolution
    g = group or w.shape[1]
    q_ref, s_ref, z_ref = reference_gptq(w, h, 4, g, asymmetric=True)
    for block in (128, 16):
        q, s, z = gptq(w, h, bits=4, group_size=group, block=block, dtype=torch.float64,
                       symmetric=False)
        assert z is not None and z.dtype == torch.int8 and z.shape == s.shape
        assert (q != q_ref).float().mean() < 1e-3
        torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-7)
        assert torch.equal(z, z_ref)
    asym = _out_err(x, w, dequantize_weight(q.float(), s, g, z))
    qs, ss, zs = gptq(w, h, bits=4, group_size=group)
    assert zs is None
    assert asym < 0.8 * _out_err(x, w, dequantize_weight(qs.float(), ss, g))


def test_group_grid_keeps_zero_exact_and_mse_never_loses() -> None:
    g = torch.Generator().manual_seed(0)
    cols = torch.randn(64, 32, generator=g) * torch.rand(64, 1, generator=g) + 0.3
    cols[:, 0] = 8.0  # an outlier per row: clipping it pays
    keep = torch.rand(64, 32, generator=g) > 0.5
    for symmetric in (True, False):
        errs = {}
        for search in ("absmax", "mse"):
            s, z = group_grid(cols, None, 4, search, symmetric)
            assert torch.equal(z, z.round()) and z.abs().max() <= 8
            if symmetric:
                assert torch.equal(z, torch.zeros_like(z))
            q = (torch.round(cols / s[:, None]) + z[:, None]).clamp(-8, 7)
            zero_q = (torch.round(torch.zeros(64) / s) + z).clamp(-8, 7)
            assert torch.equal((zero_q - z) * s, torch.zeros(64))  # 0 is a level
            errs[search] = (cols - (q - z[:, None]) * s[:, None]).square().sum(1)
            if search == "absmax":  # the range of the kept entries only
                s_k, _ = group_grid(cols, keep, 4, search, symmetric)
                assert (s_k <= s + 1e-6).all() and (s_k < s).any()
        assert (errs["mse"] <= errs["absmax"] + 1e-5).all()
        assert errs["mse"].sum() < 0.98 * errs["absmax"].sum()
    with pytest.raises(AccelValueError, match="scale search"):
        group_grid(cols, None, 4, "percentile")


def test_float_target_weight_aims_at_the_float_output() -> None:
    w, x, h = _problem()
    n = x.shape[0]
    same = float_target_weight(w, h, h, damp=0.01)
    torch.testing.assert_close(same, w)  # unchanged inputs: nothing to correct
    g = torch.Generator().manual_seed(5)
    mix = torch.eye(x.shape[1]) + 0.2 * torch.randn(x.shape[1], x.shape[1], generator=g) / \
        x.shape[1] ** 0.5
    x_hat = x @ mix  # inputs an earlier compressed layer perturbed (recoverably)
    xd, xh = x.double(), x_hat.double()
    h_hat, c = 2 * xh.t() @ xh / n, 2 * xd.t() @ xh / n
    w_t = float_target_weight(w, h_hat, c, damp=0.01)
    target = F.linear(x, w)
    assert (target - F.linear(x_hat, w_t)).square().sum() < \
        0.01 * (target - F.linear(x_hat, w)).square().sum()


def test_block_never_splits_a_group() -> None:
    assert block_for(128, 32) == 128 and block_for(128, 48) == 96 and block_for(128, 384) == 128
    assert block_for(100, 384) == 96 and block_for(128, 4) == 128
    with pytest.raises(AccelValueError, match="block"):
        block_for(0, 4)


@pytest.mark.parametrize("bits,group", [(4, 32), (4, 128), (8, 0)])
def test_gptq_beats_round_to_nearest_on_correlated_inputs(bits: int, group: int) -> None:
    w, x, h = _problem()
    g = group or w.shape[1]
    rtn = _out_err(x, w, dequantize_weight(*quantize_grouped(w, bits, g), g))
    q, s, _ = gptq(w, h, bits=bits, group_size=group)
    assert _out_err(x, w, dequantize_weight(q.float(), s, g)) < 0.9 * rtn
    q, s, _ = gptq(w, h, bits=bits, group_size=group, act_order=True)
    assert _out_err(x, w, dequantize_weight(q.float(), s, g)) < 0.9 * rtn


def test_act_order_is_the_reference_on_permuted_columns_unpermuted() -> None:
    """With one scale per row (computed before any update either way), act_order is plain
    GPTQ on columns sorted by descending diag(H), mapped back to the original order."""
    w, x, h = _problem()
    perm = torch.argsort(torch.diag(h), descending=True)
    q_ref, s_ref = reference_gptq(w[:, perm], h[perm][:, perm], 4, w.shape[1])
    q, s, _ = gptq(w, h, bits=4, group_size=0, act_order=True, dtype=torch.float64)
    assert (q[:, perm] != q_ref).float().mean() < 1e-3
    torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-7)


def test_dead_inputs_get_zero_weights_and_no_nan() -> None:
    w, x, _ = _problem()
    x[:, 5] = 0
    h = 2 * x.double().t() @ x.double() / x.shape[0]
    q, s, _ = gptq(w, h, bits=4, group_size=32)
    assert (q[:, 5] == 0).all() and torch.isfinite(s).all()
    pruned, keep = sparsegpt_2_4(w, h)
    assert torch.isfinite(pruned).all() and (pruned[:, 5] == 0).all()
    with pytest.raises(AccelValueError, match="damp"):
        gptq(w, h, bits=4, damp=-1)
    with pytest.raises(AccelValueError, match="group_size 48 does not divide K=128"):
        gptq(w, h, bits=4, group_size=48)


def _is_2_4(w: torch.Tensor) -> bool:
    return bool(((w != 0).reshape(w.shape[0], -1, 4).sum(-1) <= 2).all())


def test_sparsegpt_is_exactly_2_4_and_beats_magnitude_and_wanda() -> None:
    w, x, h = _problem()
    pruned, keep = sparsegpt_2_4(w, h)
    assert (keep.reshape(w.shape[0], -1, 4).sum(-1) == 2).all()
    assert torch.equal(pruned != 0, keep) and _is_2_4(pruned)
    magnitude = w * mask_n_m(w.abs())
    wanda = w * mask_n_m(w.abs() * x.square().sum(0).sqrt())
    err = _out_err(x, w, pruned)
    assert err < 0.9 * _out_err(x, w, magnitude) and err < 0.9 * _out_err(x, w, wanda)
    for block in (4, 64):  # lazy batching changes nothing but rounding
        p, k = sparsegpt_2_4(w, h, block=block)
        assert torch.equal(k, keep) and torch.allclose(p, pruned, atol=1e-4)


def test_gptq_keeps_a_fixed_mask_and_matches_the_reference() -> None:
    w, x, h = _problem()
    keep = mask_n_m(w.abs())
    q, s, _ = gptq(w * keep, h, bits=4, group_size=32, keep=keep, dtype=torch.float64)
    assert _is_2_4(q) and not q[~keep].any()
    q_ref, _ = reference_gptq(w * keep, h, 4, 32, keep=keep)
    assert (q != q_ref).float().mean() < 1e-3
    rtn = dequantize_weight(*quantize_grouped(w * keep, 4, 32), 32)
    assert _out_err(x, w, dequantize_weight(q.float(), s, 32)) < _out_err(x, w, rtn)


# --- the passes, end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert() -> tuple:
    """The test BERT, example inputs, and 4 calibration batches apart from the example."""
    model, inputs = get_model("bert_small_test")
    g = torch.Generator().manual_seed(1)
    ids = inputs[0]
    calib = [(torch.randint(0, int(ids.max()) + 1, ids.shape, generator=g), *inputs[1:])
             for _ in range(4)]
    return model, inputs, calib


def test_gptq_pass_on_bert_beats_rtn_and_reports(bert: tuple) -> None:
    model, inputs, calib = bert
    for mode, group in (("int4-weight-only", 32), ("int8-weight-only", 0)):
        rtn = check_pass(model, inputs, f"quantize{{mode={mode},group_size=32}}", atol=None,
                         calibration=calib)
        gq = check_pass(model, inputs, f"quantize{{mode={mode},group_size=32,method=gptq}}",
                        atol=None, calibration=calib)
        assert gq.after.op_counts()["linear_weight_only"] == 12
        assert "linear" not in gq.after.op_counts()
        node = gq.after.find("linear_weight_only")[0]
        assert node.attrs == {"bits": 8 if group == 0 else 4, "group_size": group}
        assert gq.after.constants[node.inputs[1]].dtype == torch.int8
        assert node.inputs[1].annotations["quant"]["method"] == "gptq"
        rec = gq.records[0]
        for key in ("calibration_s", "calibration_state_mb", "gptq_s", "min_layer_sqnr_db"):
            assert key in rec.metrics
        assert any(n.startswith("calibration:") for n in rec.notes)
        assert rec.metrics["mean_layer_sqnr_db"] > rtn.records[0].metrics["mean_layer_sqnr_db"]
        assert gq.max_rel_error < (0.05 if group else 0.01)
        assert gq.max_rel_error < rtn.max_rel_error * 1.1


@pytest.mark.filterwarnings("ignore:.*end-to-end argmax")  # random-init logits: near ties
def test_gptq_pass_end_to_end_on_vit_against_eager() -> None:
    model, inputs = get_model("vit_small_test", batch_size=4)
    g = torch.Generator().manual_seed(2)
    calib = [(torch.randn(inputs[0].shape, generator=g),) for _ in range(4)]
    compiled = accel.compile(model, inputs,
                             "default,quantize{mode=int4-weight-only,method=gptq,group_size=16,"
                             "act_order=true}", calibration=calib, target="reference")
    with torch.no_grad():
        ref, out = model(*inputs), compiled(*inputs)
    cos = F.cosine_similarity(ref.flatten(1), out.flatten(1))
    assert cos.min() > 0.98
    rec = [p for p in compiled.report.passes if p.name == "quantize"][0]
    assert rec.metrics["min_layer_sqnr_db"] > 15
    assert compiled.report.accuracy["cosine"] > 0.98


def test_sparsegpt_pass_is_2_4_and_beats_wanda(bert: tuple) -> None:
    model, inputs, calib = bert
    wanda = check_pass(model, inputs, "sparsify{method=wanda}", atol=None, calibration=calib)
    sgpt = check_pass(model, inputs, "sparsify{method=sparsegpt}", atol=None, calibration=calib)
    rec = sgpt.records[0]
    assert rec.metrics["density"] == pytest.approx(0.5)
    assert "sparsegpt_s" in rec.metrics and "calibration_s" in rec.metrics
    for n in sgpt.after.find("linear"):
        assert n.inputs[1].annotations["sparsity"] == "2:4"
        assert _is_2_4(sgpt.after.constants[n.inputs[1]])
    assert rec.metrics["mean_layer_sqnr_db"] > wanda.records[0].metrics["mean_layer_sqnr_db"]
    assert sgpt.max_rel_error < wanda.max_rel_error


def test_sequential_calibrates_each_layer_on_the_compressed_model(bert: tuple) -> None:
    model, inputs, calib = bert
    for pipeline, key in (("quantize{mode=int4-weight-only,group_size=32,method=gptq,"
                           "sequential=true}", "gptq_s"),
                          ("sparsify{method=sparsegpt,sequential=true}", "sparsegpt_s")):
        one = check_pass(model, inputs, pipeline.replace(",sequential=true", ""), atol=None,
                         calibration=calib)
        seq = check_pass(model, inputs, pipeline, atol=None, calibration=calib)
        rec = seq.records[0]
        assert rec.metrics["sequential_calibration_s"] > 0 and key in rec.metrics
        assert any("sequential True" in n for n in rec.notes)
        assert seq.max_rel_error < 1.5 * one.max_rel_error  # same algorithm, other Hessians
        first = seq.after.constants[seq.after.find("linear_weight_only" if "quantize" in pipeline
                                                   else "linear")[0].inputs[1]]
        ref = one.after.constants[one.after.find("linear_weight_only" if "quantize" in pipeline
                                                 else "linear")[0].inputs[1]]
        assert torch.equal(first, ref)  # the first layer sees the same (float) inputs
        aimed = check_pass(model, inputs, pipeline.replace("sequential=true",
                                                           "sequential=true,float_targets=true"),
                           atol=None, calibration=calib)
        assert aimed.max_rel_error < 1.5 * one.max_rel_error


def test_padded_positions_do_not_reach_the_hessians(bert: tuple) -> None:
    """Calibration batches with padding: what sits at padded positions (here: other token
    ids) changes nothing, and the report says only real tokens were seen."""
    model, inputs, calib = bert
    graph = accel.compile(model, inputs, "default", target="reference").graph
    assert padding_mask_or_none(graph) is graph.inputs[1]
    ids, mask = inputs
    mask = mask.clone()
    mask[:, -5:] = 0
    g = torch.Generator().manual_seed(2)
    a = [(b[0], mask) for b in calib]
    b = [(torch.where(mask.bool(), x[0], torch.randint(0, 50, ids.shape, generator=g)), mask)
         for x in calib]
    for pipeline in ("quantize{mode=int4-weight-only,group_size=32,method=gptq}",
                     "sparsify{method=sparsegpt}"):
        ra = check_pass(model, inputs, pipeline, setup="default", atol=None, calibration=a)
        rb = check_pass(model, inputs, pipeline, setup="default", atol=None, calibration=b)
        assert any("real tokens only (padding mask" in n for n in ra.records[0].notes)
        for va, vb in zip(ra.after.nodes, rb.after.nodes, strict=True):
            for ia, ib in zip(va.inputs, vb.inputs, strict=True):
                if ia is not None and ia in ra.after.constants:
                    ta, tb = ra.after.constants[ia], rb.after.constants[ib]
                    assert (ta != tb).float().mean() < 2e-3, va.name
    # the control: where no padding mask is proven (no attention op before "default"
    # canonicalizes it), padded rows enter the Hessians and the weights differ
    pa = check_pass(model, inputs, "sparsify{method=sparsegpt}", atol=None, calibration=a)
    pb = check_pass(model, inputs, "sparsify{method=sparsegpt}", atol=None, calibration=b)
    wa = [pa.after.constants[n.inputs[1]] for n in pa.after.find("linear")]
    wb = [pb.after.constants[n.inputs[1]] for n in pb.after.find("linear")]
    assert any(not torch.equal(x, y) for x, y in zip(wa, wb, strict=True))


def test_int4_default_grid_is_asymmetric_with_zero_points(bert: tuple) -> None:
    model, inputs, calib = bert
    for method in ("rtn", "gptq"):
        r = check_pass(model, inputs, f"quantize{{mode=int4-weight-only,group_size=32,"
                       f"method={method}}}", atol=None, calibration=calib)
        node = r.after.find("linear_weight_only")[0]
        assert len(node.inputs) == 5 and node.inputs[4] is not None
        z = r.after.constants[node.inputs[4]]
        assert z.dtype == torch.int8 and z.shape == r.after.constants[node.inputs[2]].shape
        assert node.inputs[1].annotations["quant"]["zero_point"] is True
        sym = check_pass(model, inputs, f"quantize{{mode=int4-weight-only,group_size=32,"
                         f"method={method},grid=symmetric,scale_search=absmax}}", atol=None,
                         calibration=calib)
        assert len(sym.after.find("linear_weight_only")[0].inputs) == 4
        assert r.records[0].metrics["mean_layer_sqnr_db"] > \
            sym.records[0].metrics["mean_layer_sqnr_db"]
    int8 = check_pass(model, inputs, "quantize{mode=int8-weight-only,method=gptq}", atol=None,
                      calibration=calib)
    assert len(int8.after.find("linear_weight_only")[0].inputs) == 4  # int8: symmetric


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_sparsify_then_quantize_keeps_2_4_and_runs_on_onnxruntime(
        bert: tuple, method: str, tmp_path: Path) -> None:
    model, inputs, calib = bert
    pipeline = ("sparsify{pattern=2:4,method=sparsegpt},"
                f"quantize{{mode=int4-weight-only,group_size=32,method={method}}}")
    compiled = accel.compile(model, inputs, pipeline, calibration=calib, target="reference")
    graph = compiled.graph
    nodes = graph.find("linear_weight_only")
    assert len(nodes) == 12
    for n in nodes:
        assert n.inputs[1].annotations["sparsity"] == "2:4"
        w_q = graph.constants[n.inputs[1]]
        assert w_q.dtype == torch.int8 and _is_2_4(w_q)
    names = [p.name for p in compiled.report.passes]
    assert "sparsify" in names and "quantize" in names  # both costs in the report
    for p in compiled.report.passes:
        if p.name in ("sparsify", "quantize"):
            assert "min_layer_sqnr_db" in p.metrics
    path = accel.export_onnx(compiled, inputs, tmp_path / "sq.onnx", dynamic_batch=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}
    with torch.no_grad():
        aten = compiled(*inputs)
        eager = model(*inputs)
    aten = aten if isinstance(aten, torch.Tensor) else aten[0]
    eager = eager if isinstance(eager, torch.Tensor) else eager[0]
    np.testing.assert_allclose(sess.run(None, feeds)[0], aten.numpy(), atol=1e-4, rtol=1e-4)
    assert F.cosine_similarity(aten.flatten(), eager.flatten(), dim=0) > 0.9


def test_bad_input_names_the_pass(bert: tuple) -> None:
    model, inputs, calib = bert
    with pytest.raises(AccelValueError, match="'quantize' \\(method=gptq\\) needs calibration"):
        check_pass(model, inputs, "quantize{mode=int4-weight-only,method=gptq}", atol=None)
    with pytest.raises(AccelValueError, match="'sparsify' \\(method=sparsegpt\\) needs calib"):
        check_pass(model, inputs, "sparsify{method=sparsegpt}", atol=None)
    with pytest.raises(AccelValueError, match="method=gptq applies to the weight-only modes"):
        check_pass(model, inputs, "quantize{mode=int8-dynamic,method=gptq}", atol=None,
                   calibration=calib)
    with pytest.raises(AccelValueError, match="rtn.*gptq"):
        accel.compile(model, inputs, "quantize{mode=int4-weight-only,method=awq}")
    with pytest.raises(AccelValueError, match="damp >= 0"):
        check_pass(model, inputs, "quantize{mode=int4-weight-only,method=gptq,damp=-0.1}",
                   atol=None, calibration=calib)
    # K = 64 (hidden) and 256 (intermediate) are not multiples of 48: the largest divisor
    # below it is used, and the report says so
    r = check_pass(model, inputs, "quantize{mode=int4-weight-only,method=gptq,group_size=48}",
                   atol=None, calibration=calib)
    assert any("group_size 48 does not divide K" in n for n in r.records[0].notes)
    assert {n.attrs["group_size"] for n in r.after.find("linear_weight_only")} == {32}
    assert r.max_rel_error < 0.05


# --- the accuracy report's end-to-end check --------------------------------------------------


def _record(collapsed: int, sqnr: float = 12.0) -> PassRecord:
    return PassRecord("sparsify", lossy=True, changed=True,
                      metrics={"min_layer_sqnr_db": sqnr, "collapsed_layers": collapsed})


def test_hidden_accuracy_loss_decision() -> None:
    low = {"cosine": calibration.E2E_COSINE_WARN - 0.1}
    message = hidden_accuracy_loss(low, [_record(0)])
    assert message is not None and "cosine" in message and "sparsify" in message
    assert "12.0 dB" in message
    assert hidden_accuracy_loss(low, [_record(1)]) is None  # the collapse warning said it
    assert hidden_accuracy_loss({"cosine": 0.999}, [_record(0)]) is None
    assert hidden_accuracy_loss(low, []) is None
    agree = {"cosine": 0.99, "argmax_agreement": calibration.E2E_ARGMAX_WARN - 0.05}
    assert "argmax agreement" in (hidden_accuracy_loss(agree, [_record(0)]) or "")
    unchanged = PassRecord("quantize", lossy=True, changed=False,
                           metrics={"collapsed_layers": 0})
    assert hidden_accuracy_loss(low, [unchanged]) is None


def test_compile_warns_when_end_to_end_falls_but_layers_look_fine(
        bert: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs, calib = bert
    monkeypatch.setattr(calibration, "E2E_COSINE_WARN", 0.999999)
    with pytest.warns(UserWarning, match="end-to-end output cosine .* no layer of sparsify"):
        compiled = accel.compile(model, inputs, "sparsify{method=magnitude,warn_below_db=0}",
                                 calibration=calib, target="reference")
    rec = [p for p in compiled.report.passes if p.name == "sparsify"][0]
    assert rec.metrics["collapsed_layers"] == 0
    assert any(n.startswith("warning: end-to-end") for n in rec.notes)
