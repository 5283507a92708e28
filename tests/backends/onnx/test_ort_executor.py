"""The onnxruntime executor and the ``cpu`` target's executor choice."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.backends.onnx import registry
from accel.backends.onnx.ort import lower_onnxruntime
from accel.errors import AccelValueError, ExportError
from accel.host import physical_cores
from accel.models import get_model
from accel.testing import assert_matches_eager


@pytest.fixture(scope="module")
def vit() -> tuple[torch.nn.Module, tuple]:
    return get_model("vit_small_test", batch_size=2)


def test_physical_cores_is_positive() -> None:
    assert 1 <= physical_cores() <= (torch.get_num_threads() * 4 or 1024)


def test_ort_executor_matches_eager(vit) -> None:  # noqa: ANN001
    model, inputs = vit
    graph = accel.compile(model, inputs, target="reference").graph
    ex = lower_onnxruntime(graph, threads=1)
    (out,) = ex.run(list(inputs))
    torch.testing.assert_close(out, model(*inputs).detach(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("executor, note", [
    ("ort", "onnxruntime executor"), ("openvino", "openvino executor"),
    ("aten", "aten executor"), ("auto", "(measured: aten"),
])
def test_cpu_target_executor_option(vit, executor: str, note: str) -> None:  # noqa: ANN001
    model, inputs = vit
    compiled = accel.compile(model, inputs, target="cpu", options={"executor": executor})
    assert any(note in line for line in compiled.report.lowering), compiled.report.lowering
    chosen = {"ort": ["onnxruntime"], "openvino": ["openvino"], "aten": ["aten"],
              "auto": ["onnxruntime", "openvino", "aten"]}
    assert compiled.report.executor in chosen[executor]
    if executor == "auto":  # the measured choice names the executor the report records
        assert f"executor: {compiled.report.executor}" in compiled.report.lowering[0]
    assert_matches_eager(compiled, model, inputs)
    other = tuple(torch.randn(3, *t.shape[1:]) for t in inputs)  # a new specialization
    assert_matches_eager(compiled, model, other)


def test_cpu_target_falls_back_to_aten_without_lowering(vit, monkeypatch) -> None:  # noqa: ANN001
    model, inputs = vit
    monkeypatch.delitem(registry._LOWERINGS, "gelu")
    compiled = accel.compile(model, inputs, target="cpu")
    (line,) = compiled.report.lowering
    assert "aten executor" in line and "without ONNX lowering" in line and "gelu" in line
    assert compiled.report.executor == "aten"
    assert_matches_eager(compiled, model, inputs)
    with pytest.raises(ExportError, match="executor 'ort' was requested.*gelu"):
        accel.compile(model, inputs, target="cpu", options={"executor": "ort"})


def test_unknown_executor_is_rejected(vit) -> None:  # noqa: ANN001
    model, inputs = vit
    with pytest.raises(AccelValueError, match="unknown executor 'tvm'"):
        accel.compile(model, inputs, target="cpu", options={"executor": "tvm"})
