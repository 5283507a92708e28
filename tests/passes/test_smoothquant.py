"""Tests of the smoothquant pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accel.calibration import MinMaxObserver, calibrate
from accel.errors import AccelValueError
from accel.models import get_model
from accel.testing import check_pass


class PreLNBlock(nn.Module):
    """A pre-LN MLP whose LayerNorm output has one outlier channel."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(32)
        self.fc_a, self.fc_b = nn.Linear(32, 64), nn.Linear(32, 16)
        with torch.no_grad():
            self.norm.weight[3] = 40.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.fc_a(h).sum(-1, keepdim=True) + self.fc_b(h)


def test_folds_scales_into_layernorm_and_linears() -> None:
    torch.manual_seed(0)
    model, x = PreLNBlock().eval(), torch.randn(4, 10, 32)
    r = check_pass(model, (x,), "smoothquant{alpha=0.5}", atol=1e-4, calibration=[(x,)])
    assert "1 folded into the LN affine" in r.records[0].notes[0]
    assert r.after.op_counts() == r.before.op_counts()  # scales folded, no new op
    ln = r.after.find("layer_norm")[0]
    stats = calibrate(r.after, [(x,)], {ln.output: MinMaxObserver()})
    before = calibrate(r.before, [(x,)], {r.before.find("layer_norm")[0].output:
                                          MinMaxObserver()})
    # the outlier channel is flattened: max over channels / mean shrinks
    ratio = lambda s: (s.channel_absmax.max() / s.channel_absmax.mean()).item()  # noqa: E731
    assert ratio(next(iter(stats.values()))) < ratio(next(iter(before.values()))) / 2
    # s_j = max|X_j|^0.5 / max|W_j|^0.5 with W max shared by both linears
    s_expected = (next(iter(before.values())).channel_absmax.double().sqrt()
                  / torch.cat([model.fc_a.weight, model.fc_b.weight]).abs().amax(0).double().sqrt())
    ln_w = r.after.constants[ln.inputs[1]]
    torch.testing.assert_close(ln_w.double(), model.norm.weight.double() / s_expected,
                               rtol=1e-4, atol=1e-6)


def test_post_ln_bert_scales_the_branch_and_helps_static_int8() -> None:
    model, inputs = get_model("bert_small_test")
    r = check_pass(model, inputs, "smoothquant", atol=1e-4, calibration=[inputs])
    assert r.after.op_counts()["mul"] == r.before.op_counts().get("mul", 0) + 4
    q = check_pass(model, inputs, "smoothquant,quantize{mode=int8-static}", atol=None,
                   calibration=[inputs])
    assert q.records[1].metrics["min_layer_sqnr_db"] > 30


def test_needs_calibration_and_valid_alpha() -> None:
    model, x = PreLNBlock().eval(), torch.randn(2, 3, 32)
    with pytest.raises(AccelValueError, match="calibration"):
        check_pass(model, (x,), "smoothquant", atol=None)
    with pytest.raises(AccelValueError, match="alpha"):
        check_pass(model, (x,), "smoothquant{alpha=2}", atol=None, calibration=[(x,)])
