"""Tests of calibration: observers, the observing executor, accuracy, calibration checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import accel
from accel.calibration import (
    CrossHessianObserver,
    HessianObserver,
    HistogramObserver,
    MinMaxObserver,
    SampleObserver,
    calibrate,
    calibrate_paired,
    output_accuracy,
    progress,
    sqnr_db,
)
from accel.errors import AccelTypeError, AccelValueError
from accel.frontend import capture


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_minmax_and_histogram_observers() -> None:
    torch.manual_seed(0)
    data = [torch.randn(1000, 4) * s for s in (1.0, 3.0)]
    mm, hist = MinMaxObserver(), HistogramObserver(bins=4096)
    for t in data:
        mm.update(t)
        hist.update(t)
    allv = torch.cat(data)
    assert mm.min == allv.min().item() and mm.max == allv.max().item()
    torch.testing.assert_close(mm.channel_absmax, allv.abs().amax(0))
    q = torch.quantile(allv.abs().flatten(), 0.99).item()
    assert hist.percentile(99) == pytest.approx(q, rel=0.02)
    assert 0 < hist.entropy_threshold() <= hist.upper
    assert hist.percentile(100) == pytest.approx(allv.abs().max().item(), rel=1e-3)


def test_calibrate_observes_intermediate_values() -> None:
    torch.manual_seed(0)
    model = TwoLayer().eval()
    batches = [(torch.randn(5, 16),) for _ in range(3)]
    graph = capture(model, batches[0])
    relu_out = graph.find("linear")[1].inputs[0]
    obs, sample = MinMaxObserver(), SampleObserver(max_rows=7)
    calibrate(graph, batches, {relu_out: [obs, sample], graph.inputs[0]: MinMaxObserver()})
    with torch.no_grad():
        acts = torch.cat([torch.relu(model.fc1(b[0])) for b in batches])
    assert obs.min == 0.0 and obs.max == pytest.approx(acts.max().item())
    assert sample.sample().shape == (7, 32)
    torch.testing.assert_close(sample.sq_sum, acts.square().sum(0))
    with pytest.raises(AccelValueError, match="at least one batch"):
        calibrate(graph, [], {relu_out: MinMaxObserver()})


def test_progress_disabled_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCEL_PROGRESS", "0")
    items = [1, 2]
    assert progress(items, 2, "x") is items


def test_sqnr_and_output_accuracy() -> None:
    y = torch.ones(100)
    assert sqnr_db(y, y * 1.1) == pytest.approx(20.0)
    graph = capture(TwoLayer().eval(), (torch.randn(2, 16),))
    same = output_accuracy(graph, graph, [(torch.randn(2, 16),)])
    assert same["max_abs_diff"] == 0 and same["cosine"] == pytest.approx(1.0)
    assert same["argmax_agreement"] == 1.0  # [batch, classes] output: argmax agreement reported


def test_argmax_agreement_counts_flipped_rows() -> None:
    class Mix(torch.nn.Module):
        def __init__(self, weight: torch.Tensor) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight

    x = torch.tensor([[3.0, 1, 0], [1, 3, 0], [0, 1, 3], [0, 3, 1]])  # argmax 0, 1, 2, 1
    identity = capture(Mix(torch.eye(3)).eval(), (x,))
    swap01 = capture(Mix(torch.eye(3)[[1, 0, 2]]).eval(), (x,))  # swaps classes 0 and 1
    acc = output_accuracy(identity, swap01, [(x,)])
    assert acc["argmax_agreement"] == 0.25  # only the row whose argmax is class 2 agrees


@pytest.mark.parametrize("bad,match", [
    ([torch.randn(4, 16).double()], "float64"),
    ([torch.randn(4, 16, 1)], "rank 3"),
    ([torch.randn(4, 15)], r"shape \(4, 15\)"),
    ([(torch.randn(4, 16), torch.randn(4, 16))], "2 tensor"),
    ([], "empty"),
    (["text"], "str"),
])
def test_bad_calibration_data_is_rejected(bad: list, match: str) -> None:
    with pytest.raises(AccelTypeError, match=match):
        accel.compile(TwoLayer().eval(), (torch.randn(2, 16),), "quantize", calibration=bad)


def test_calibration_with_other_batch_size_works_and_reports_accuracy() -> None:
    torch.manual_seed(0)
    model = TwoLayer().eval()
    calib = [torch.randn(7, 16), torch.randn(3, 16)]
    compiled = accel.compile(model, (torch.randn(2, 16),), "quantize{mode=int8-static}",
                             calibration=calib)
    assert compiled.report.accuracy["cosine"] > 0.999
    assert not accel.compile(model, (torch.randn(2, 16),), "default",
                             calibration=calib).report.accuracy


def test_calibration_batches_of_another_size_are_regrouped() -> None:
    """Calibration in batches of 3 for a model compiled at batch 4 (static shapes)."""
    import accel
    from accel.calibration import rebatch
    from accel.models import get_model

    model, (x,) = get_model("vit_small_test", batch_size=4)
    calib = [(torch.randn(3, *x.shape[1:]),) for _ in range(3)]
    groups = rebatch(calib, (x,))
    assert [g[0].shape[0] for g in groups] == [4, 4]            # 9 samples -> 2 full batches
    assert rebatch(calib[:1], (x,))[0][0].shape[0] == 4         # 3 samples repeated to fill 4
    compiled = accel.compile(model, (x,), "quantize{mode=int8-static}", target="reference",
                             calibration=calib)
    assert compiled.report.accuracy["cosine"] > 0.95


class MaskedTokens(nn.Module):
    """Token-wise MLP over ``[B, S, 16]`` with a ``[B, S]`` padding mask zeroing padded rows."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x))) * mask.unsqueeze(-1)


def _masked_batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        mask = torch.ones(2, 6, dtype=torch.long)
        mask[0, 4 - i:] = 0  # right padding of varied length
        out.append((torch.randn(2, 6, 16, generator=g), mask))
    return out


def test_token_mask_feeds_observers_the_real_rows_only() -> None:
    torch.manual_seed(0)
    model = MaskedTokens().eval()
    batches = _masked_batches()
    graph = capture(model, batches[0])
    x_in, h_in = graph.inputs[0], graph.find("linear")[1].inputs[0]
    hx, hh, sample = HessianObserver(), HessianObserver(), SampleObserver()
    calibrate(graph, batches, {x_in: hx, h_in: [hh, sample]}, token_mask=graph.inputs[1])
    real_x = torch.cat([x[m != 0] for x, m in batches])
    with torch.no_grad():
        real_h = torch.relu(model.fc1(real_x))
    assert hx.rows == real_x.shape[0] == 3 * 12 - (2 + 3 + 4)
    torch.testing.assert_close(hx.hessian(), 2 * real_x.double().t() @ real_x.double() /
                               real_x.shape[0])
    torch.testing.assert_close(hh.hessian().float(), 2 * real_h.t() @ real_h / real_h.shape[0],
                               rtol=1e-4, atol=1e-5)
    assert sample.sample().shape == (real_x.shape[0], 32)
    # without the mask, padded rows count as tokens
    plain = HessianObserver()
    calibrate(graph, batches, {x_in: plain})
    assert plain.rows == 36


def test_output_accuracy_at_real_tokens_ignores_padded_positions() -> None:
    torch.manual_seed(0)
    model = MaskedTokens().eval()
    batches = _masked_batches()
    graph = capture(model, batches[0])
    class Bumped(MaskedTokens):  # a "compressed" model that differs at padded positions only
        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return super().forward(x, mask) + (1 - mask.unsqueeze(-1).float())

    bumped = Bumped().eval()
    bumped.load_state_dict(model.state_dict())
    modified = capture(bumped, batches[0])
    assert output_accuracy(graph, modified, batches)["cosine"] < 0.999
    real = output_accuracy(graph, modified, batches, token_mask=graph.inputs[1])
    assert real["cosine"] == pytest.approx(1.0) and real["max_abs_diff"] == 0.0


def test_cross_hessian_pairs_reference_and_own_rows() -> None:
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(10, 4, generator=g) for _ in range(3)]
    x_hats = [x + 0.1 * torch.randn(10, 4, generator=g) for x in xs]
    obs = CrossHessianObserver()
    for x, x_hat in zip(xs, x_hats, strict=True):
        obs.update_reference(x)
        obs.update(x_hat)
    x, x_hat = torch.cat(xs).double(), torch.cat(x_hats).double()
    torch.testing.assert_close(obs.hessian(), 2 * x_hat.t() @ x_hat / 30)
    torch.testing.assert_close(obs.cross(), 2 * x.t() @ x_hat / 30)
    with pytest.raises(AccelValueError, match="reference rows first"):
        obs.update(x_hats[0])


def test_calibrate_paired_sees_one_value_in_two_graphs() -> None:
    torch.manual_seed(0)
    model = MaskedTokens().eval()
    batches = _masked_batches()
    graph = capture(model, batches[0])
    fc2 = graph.find("linear")[1]
    h_in = fc2.inputs[0]
    fc1_w = graph.find("linear")[0].inputs[1]
    rw = graph.rewriter()
    rw.replace(fc1_w, rw.const(graph.const(fc1_w) * 0.5, "half"))
    halved = rw.finish()
    obs = calibrate_paired(graph, halved, batches, h_in, CrossHessianObserver(),
                           token_mask=graph.inputs[1])
    real_x = torch.cat([x[m != 0] for x, m in batches])
    with torch.no_grad():
        h = torch.relu(model.fc1(real_x)).double()
        h_hat = torch.relu(F.linear(real_x, model.fc1.weight * 0.5, model.fc1.bias)).double()
    n = real_x.shape[0]
    torch.testing.assert_close(obs.cross(), 2 * h.t() @ h_hat / n, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(obs.hessian(), 2 * h_hat.t() @ h_hat / n, rtol=1e-5, atol=1e-6)
