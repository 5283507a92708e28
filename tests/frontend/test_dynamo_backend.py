"""torch.compile(backend="accel") goes through the same compile driver as accel.compile: same
settings (pipeline, target, calibration, target options), same report, accuracy of lossy
passes included, reachable through accel.reports()."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.models import get_model

PIPELINE = "default,quantize{mode=int8-static}"


@pytest.fixture(scope="module")
def vit() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], list[tuple[torch.Tensor, ...]]]:
    model, inputs = get_model("vit_small_test", batch_size=2)
    calib = [(torch.randn_like(inputs[0]),) for _ in range(3)]
    return model, inputs, calib


def _torch_compile(model: torch.nn.Module, inputs: tuple, **options: object
                   ) -> tuple[object, list[accel.Report]]:
    torch._dynamo.reset()
    start = len(accel.reports())
    compiled = torch.compile(model, backend="accel", options=options)
    with torch.no_grad():
        out = compiled(*inputs)
    return out, accel.reports()[start:]


def test_same_settings_same_result_and_report_as_accel_compile(vit) -> None:  # noqa: ANN001
    model, inputs, calib = vit
    out, reports = _torch_compile(model, inputs, pipeline=PIPELINE, target="reference",
                                  calibration=calib)
    direct = accel.compile(model, inputs, PIPELINE, "reference", calibration=calib)
    (report,) = reports
    assert report.pipeline == direct.report.pipeline and report.target == "reference"
    assert [p.name for p in report.passes] == [p.name for p in direct.report.passes]
    quant = next(p for p in report.passes if p.name == "quantize")
    assert quant.changed and quant.metrics, quant  # calibrated: per-layer SQNR recorded
    # the lossy pass's end-to-end cost, measured on the calibration data, as accel.compile does
    assert set(report.accuracy) == set(direct.report.accuracy) >= {"cosine", "output_sqnr_db"}
    assert report.accuracy["cosine"] == pytest.approx(direct.report.accuracy["cosine"], abs=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(out, direct(*inputs), atol=1e-5, rtol=1e-5)
    assert report.executor == "aten"


def test_calibration_that_does_not_fit_the_graph_is_reported(vit) -> None:  # noqa: ANN001
    model, inputs, _ = vit
    wrong = [(torch.randn(2, 5),)]  # rank 2: not this graph's input
    _, (report,) = _torch_compile(model, inputs, pipeline="default,quantize", target="reference",
                                  calibration=wrong)
    assert any("calibration data not used for this graph" in line for line in report.lowering)
    assert any(p.name == "quantize" and p.changed for p in report.passes)
    assert "cosine" in report.accuracy  # measured on the graph's example inputs instead
    # a pass that cannot run without calibration: the graph runs eagerly and says why
    with pytest.warns(UserWarning, match="needs calibration data"):
        out, (report,) = _torch_compile(model, inputs, pipeline=PIPELINE, target="reference",
                                        calibration=wrong)
    assert report.eager_fallbacks and "needs calibration data" in report.eager_fallbacks[0]
    with torch.no_grad():
        torch.testing.assert_close(out, model(*inputs))


def test_target_options_are_checked(vit) -> None:  # noqa: ANN001
    model, inputs, _ = vit
    with pytest.raises(Exception, match="target 'cpu' has no option 'cudagraphs'") as info:
        _torch_compile(model, inputs, target="cpu", cudagraphs=True)
    assert isinstance(info.value, accel.AccelError) or isinstance(
        info.value.__cause__, accel.AccelError) or "AccelValueError" in str(info.value)
    with pytest.raises(accel.AccelValueError, match="target 'cpu' has no option 'cudagraphs'"):
        accel.compile(model, inputs, target="cpu", options={"cudagraphs": True})


def test_target_options_reach_the_target(vit) -> None:  # noqa: ANN001
    model, inputs, _ = vit
    _, (report,) = _torch_compile(model, inputs, target="cpu", executor="aten")
    assert report.executor == "aten"
    assert any("forced by options" in line for line in report.lowering)


def test_torch_compile_mode_is_ignored_with_a_warning(vit) -> None:  # noqa: ANN001
    from accel import torch_compile

    model, inputs, _ = vit
    torch._dynamo.reset()
    torch_compile._warned.discard("mode")
    compiled = torch.compile(model, backend="accel", mode="max-autotune")
    with pytest.warns(UserWarning, match="mode='max-autotune' has no meaning for accel"):
        with torch.no_grad():
            out = compiled(*inputs)
    with torch.no_grad():
        torch.testing.assert_close(out, model(*inputs), atol=1e-4, rtol=1e-4)


def test_bad_settings_raise_at_once(vit) -> None:  # noqa: ANN001
    """A typo in the pipeline is the user's to fix: it raises (through Dynamo's
    BackendCompilerFailed), it does not run the model eagerly behind their back."""
    model, inputs, _ = vit
    with pytest.raises(Exception, match="unknown pass 'defualt'"):
        _torch_compile(model, inputs, pipeline="defualt")
