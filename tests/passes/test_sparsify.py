"""Tests of the 2:4 sparsify pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import accel
from accel.errors import AccelValueError
from accel.models import get_model
from accel.passes.sparsify import mask_n_m
from accel.testing import check_pass


def test_mask_keeps_two_largest_of_every_four() -> None:
    score = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.4, 0.3, 0.2]])
    keep = mask_n_m(score)
    assert keep.tolist() == [[True, False, True, False, False, True, True, False]]


def _check_2_4(w: torch.Tensor) -> None:
    nonzero = (w != 0).reshape(w.shape[0], -1, 4).sum(-1)
    assert (nonzero <= 2).all()


def test_magnitude_prunes_every_linear_with_annotation() -> None:
    model, inputs = get_model("bert_small_test")
    r = check_pass(model, inputs, "sparsify", atol=None)
    rec = r.records[0]
    assert rec.metrics["density"] == pytest.approx(0.5)
    assert "min_layer_sqnr_db" in rec.metrics
    linears = r.after.find("linear")
    assert len(linears) == 12
    for n in linears:
        assert n.inputs[1].annotations["sparsity"] == "2:4"
        _check_2_4(r.after.constants[n.inputs[1]])


def test_wanda_uses_activation_norms_and_targets_mlp() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0] * 2] * 4))
    x = torch.randn(64, 8) * torch.tensor([100.0, 100.0, 1, 1, 1, 1, 100, 100])
    mag = check_pass(model, (x,), "sparsify{method=magnitude}", atol=None)
    wanda = check_pass(model, (x,), "sparsify{method=wanda}", atol=None, calibration=[(x,)])
    w_mag = mag.after.constants[mag.after.find("linear")[0].inputs[1]]
    w_wanda = wanda.after.constants[wanda.after.find("linear")[0].inputs[1]]
    assert (w_mag[0] != 0).tolist() == [False, False, True, True] * 2
    assert (w_wanda[0] != 0).tolist() == [True, True, False, False, False, False, True, True]
    assert wanda.records[0].metrics["min_layer_sqnr_db"] > mag.records[0].metrics[
        "min_layer_sqnr_db"]

    bert, inputs = get_model("bert_small_test")
    r = check_pass(bert, inputs, "sparsify{method=wanda,targets=mlp}", atol=None,
                   calibration=[inputs])
    pruned = [n for n in r.after.find("linear") if "sparsity" in n.inputs[1].annotations]
    assert {n.meta["source"].split(".")[-1] for n in pruned} == {"intermediate", "output"}


def test_errors_and_report_density() -> None:
    model, inputs = get_model("bert_small_test")
    with pytest.raises(AccelValueError, match="calibration"):
        check_pass(model, inputs, "sparsify{method=wanda}", atol=None)
    with pytest.raises(AccelValueError, match="magnitude.*wanda"):
        accel.compile(model, inputs, "sparsify{method=random}")
    with pytest.raises(AccelValueError, match="2:4"):
        accel.compile(model, inputs, "sparsify{pattern=1:4}")
    with pytest.warns(UserWarning, match="sparsify.*dB"):
        compiled = accel.compile(model, inputs, "sparsify{warn_below_db=30}",
                                 calibration=[inputs])
    assert 0 < compiled.report.accuracy["cosine"] < 1
    assert "density=0.5" in compiled.report.table()
