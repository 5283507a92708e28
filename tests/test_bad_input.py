"""Bad inputs get errors a user can act on; unsupported code degrades visibly, not silently."""

from __future__ import annotations

import warnings

import pytest
import torch

import accel
from accel import torch_compile
from accel.errors import AccelTypeError, AccelValueError, CaptureError


class DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        if y.sum() > 0:  # branch on a tensor value
            return y + 1
        return y - 1


@pytest.mark.parametrize("model", [42, "resnet50", None])
def test_non_module_model(model: object) -> None:
    with pytest.raises(AccelTypeError, match="expects an nn.Module or a callable, got"):
        accel.compile(model, (torch.randn(2),))


def test_bad_example_inputs() -> None:
    with pytest.raises(AccelTypeError, match=r"example_inputs\[1\] is a int"):
        accel.compile(torch.nn.ReLU(), (torch.randn(2), 3))
    with pytest.raises(AccelTypeError, match="must be a tensor or a tuple of tensors"):
        accel.compile(torch.nn.ReLU(), {"x": torch.randn(2)})


def test_plain_callable_is_accepted() -> None:
    compiled = accel.compile(lambda x: torch.tanh(x) * 3, (torch.randn(4),))
    x = torch.randn(4)
    torch.testing.assert_close(compiled(x), torch.tanh(x) * 3)


def test_data_dependent_control_flow_names_the_line() -> None:
    with pytest.raises(CaptureError) as e:
        accel.compile(DataDependent(), (torch.randn(4),))
    msg = str(e.value)
    assert "test_bad_input.py" in msg and "if y.sum() > 0" in msg
    assert "torch.where" in msg and "backend='accel'" in msg


def test_data_dependent_control_flow_under_torch_compile_graph_breaks() -> None:
    torch._dynamo.reset()
    start = len(accel.reports())
    model = DataDependent()
    compiled = torch.compile(model, backend="accel")
    with torch.no_grad():
        for x in (torch.ones(4), -torch.ones(4)):
            torch.testing.assert_close(compiled(x), model(x))
    reports = accel.reports()[start:]
    assert len(reports) >= 2  # the pieces around the break were compiled by accel
    assert all(not r.eager_fallbacks for r in reports)
    assert any(r.passes for r in reports)


@pytest.mark.parametrize(("fn", "op"), [
    # (cumprod and flip now decompose into IR ops; these have no decomposition that lowers)
    (lambda x: torch.special.i1(x) + 1, "i1"),
    (lambda x: torch.special.bessel_j0(x) * 2, "bessel_j0"),
])
def test_op_without_lowering_runs_as_aten_fallback(fn: object, op: str) -> None:
    x = torch.rand(2, 5) + 0.5
    compiled = accel.compile(fn, (x,))
    torch.testing.assert_close(compiled(x), fn(x))
    (line,) = compiled.report.fallbacks
    assert op in line and "no IR lowering" in line
    assert "1 aten fallback(s)" in compiled.report.summary()
    (node,) = compiled.graph.fallbacks()
    assert node.op == "aten"


@pytest.mark.parametrize(("pipeline", "match"), [
    ("default,frobnicate", r"unknown pass 'frobnicate'; valid passes: .*dce"),
    ("fold-constants{limit=3}", r"no option 'limit'; options: max_elements: int"),
    ("fold-constants{max_elements=lots}", r"max_elements='lots' is not a valid int"),
    ("cse{", r"unclosed brace"),
    (3, r"pipeline must be a string"),
])
def test_invalid_pipeline(pipeline: object, match: str) -> None:
    with pytest.raises(AccelValueError, match=match):
        accel.compile(torch.nn.ReLU(), (torch.randn(2),), pipeline=pipeline)


def test_unknown_target() -> None:
    with pytest.raises(AccelValueError, match="unknown target 'tpu'; valid targets: auto, "):
        accel.compile(torch.nn.ReLU(), (torch.randn(2),), target="tpu")


def test_training_graph_runs_eagerly_with_one_warning() -> None:
    torch._dynamo.reset()
    torch_compile._warned.discard("grad")
    model = torch.nn.Linear(4, 2)
    compiled = torch.compile(model, backend="accel")
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(x)
        out.sum().backward()
        compiled(torch.randn(5, 4))
    grad_warnings = [w for w in caught if "needs gradients" in str(w.message)]
    assert len(grad_warnings) == 1
    assert model.weight.grad is not None and model.weight.grad.shape == (2, 4)
    torch.testing.assert_close(out, model(x))
    assert any(r.eager_fallbacks == ["needs gradients"] for r in accel.reports())


class UpdatesBuffer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.add_(1)
        return x + self.calls


@pytest.mark.parametrize(("model", "what"), [
    (UpdatesBuffer(), r"buffer 'calls' \(by aten.add.Tensor\)"),
])
def test_in_place_update_of_a_buffer_is_refused(model: torch.nn.Module, what: str,
                                                          tmp_path) -> None:  # noqa: ANN001
    # the buffer is frozen into a constant, which cannot hold the update (updates of inputs
    # are supported: tests/frontend/test_input_mutation.py)
    with pytest.raises(CaptureError, match=f"(?s)updates {what} in place.*x = x.clone"):
        accel.compile(model, (torch.ones(3),))
    with pytest.raises(CaptureError, match="in place"):
        accel.export_onnx(model, (torch.ones(3),), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_in_place_update_of_an_input_runs_eagerly_under_torch_compile() -> None:
    torch._dynamo.reset()
    compiled = torch.compile(UpdatesBuffer(), backend="accel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = compiled(torch.ones(3))
    torch.testing.assert_close(out, torch.full((3,), 2.0))


class UpdatesConstant(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.noise = torch.ones(3)  # a plain tensor attribute, not a buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.noise.exponential_()


def test_in_place_update_of_a_tensor_constant_is_a_capture_error() -> None:
    # torch.export's own RuntimeError ("Constant noise is mutated") used to escape unwrapped
    with pytest.raises(CaptureError, match=r"(?s)could not capture UpdatesConstant: it updates "
                                           r"a tensor in place.*Constant noise is mutated.*clone"):
        accel.compile(UpdatesConstant(), (torch.ones(3),))
