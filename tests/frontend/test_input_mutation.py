"""In-place updates of inputs: the functional graph returns each updated input's new value as
an extra output (``graph.meta["input_mutations"]``) and the compiled model copies it back into
the caller's tensor, so callers see eager's semantics (as AOTAutograd and torch.export do)."""

from __future__ import annotations

import warnings

import onnx
import onnxruntime as ort
import pytest
import torch

import accel
from accel.errors import CaptureError, GuardError
from accel.opinfo import compare_updates


class KVCache(torch.nn.Module):
    """A decoder step writing the new key/value rows into caches passed as inputs, and a
    running count updated in place."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, k_cache: torch.Tensor,
                steps: torch.Tensor) -> torch.Tensor:
        k = self.proj(x)  # [1, 8]
        k_cache.index_copy_(0, pos, k)
        steps.add_(1)
        return torch.softmax(k_cache @ k.t(), dim=0)


def _inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    return torch.randn(1, 8), torch.tensor([2]), torch.randn(5, 8), torch.zeros(1)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_updates_reach_the_callers_tensors(target: str) -> None:
    model = KVCache().eval()
    eager_in, mine = _inputs(), _inputs()
    with torch.no_grad():
        expected = model(*eager_in)
        compiled = accel.compile(model, _inputs(), target=target)
        out = compiled(*mine)
    assert compiled.graph.meta["input_mutations"] == ((1, 2), (2, 3))
    assert len(compiled.graph.outputs) == 3  # the model's output, then the two updates
    torch.testing.assert_close(out, expected)
    for a, e in zip(mine, eager_in, strict=True):
        torch.testing.assert_close(a, e)
    with torch.no_grad():  # a second call updates again
        compiled(*mine)
    assert mine[3].item() == 2.0


def test_onnx_export_adds_one_named_output_per_updated_input(tmp_path) -> None:  # noqa: ANN001
    model = KVCache().eval()
    path = accel.export_onnx(model, _inputs(), tmp_path / "kv.onnx", dynamic_batch=False)
    proto = onnx.load(str(path))
    names = [o.name for o in proto.graph.output]
    assert names == ["output0", "input2_updated", "input3_updated"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["accel.input_mutations"] == "input2_updated=input2,input3_updated=input3"
    eager_in = _inputs()
    with torch.no_grad():
        expected = model(*eager_in)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), _inputs(), strict=True)}
    out, k_new, steps_new = sess.run(None, feed)
    torch.testing.assert_close(torch.from_numpy(out), expected)
    torch.testing.assert_close(torch.from_numpy(k_new), eager_in[2])
    torch.testing.assert_close(torch.from_numpy(steps_new), eager_in[3])


def test_random_in_place_draw_updates_the_input() -> None:
    class Draw(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.exponential_()

    x = torch.zeros(1000)
    compiled = accel.compile(Draw(), (x.clone(),), target="reference")
    out = compiled(x)
    assert (x > 0).all() and torch.equal(out, x)


def test_an_updated_input_aliasing_another_is_refused() -> None:
    class AddInto(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            x.add_(y)
            return x + y

    compiled = accel.compile(AddInto(), (torch.ones(3), torch.ones(3)), target="reference")
    x = torch.ones(3)
    with pytest.raises(GuardError, match="updates in place, shares memory with input 1"):
        compiled(x, x)


def test_a_frozen_buffer_updated_in_place_is_refused_under_torch_compile() -> None:
    class Counts(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("n", torch.zeros(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.n.add_(x)
            return x * 2

    torch._dynamo.reset()
    model = Counts()
    compiled = torch.compile(model, backend="accel")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        compiled(torch.ones(3))  # runs eagerly: the update still happens
    assert torch.equal(model.n, torch.ones(3))
    assert any("freezes into a constant" in f for r in accel.reports()
               for f in r.eager_fallbacks)
    with pytest.raises(CaptureError, match="buffer 'n'"):
        accel.compile(Counts(), (torch.ones(3),))


def test_torch_compile_writes_input_updates_back() -> None:
    class AddInto(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            x.add_(y)
            return x * 2

    torch._dynamo.reset()
    compiled = torch.compile(AddInto(), backend="accel")
    x, y = torch.randn(3), torch.randn(3)
    x0 = x.clone()
    with torch.no_grad():
        out = compiled(x, y)
    torch.testing.assert_close(x, x0 + y)
    torch.testing.assert_close(out, 2 * (x0 + y))


def test_sweep_flags_an_update_that_did_not_happen() -> None:
    before = (torch.zeros(3),)
    eager = (torch.ones(3),)
    assert "left it unchanged" in compare_updates(before, eager, {})
    assert compare_updates(before, eager, {0: torch.ones(3)}) == ""
    assert "after the call" in compare_updates(before, before, {0: torch.ones(3)})


class Norms(torch.nn.Module):
    """Functional instance and batch norms that use the input's statistics and update
    running ones passed in: their schemas say nothing of the update (eager does it inside)."""

    def forward(self, x: torch.Tensor, im: torch.Tensor, iv: torch.Tensor, bm: torch.Tensor,
                bv: torch.Tensor) -> torch.Tensor:
        a = torch.nn.functional.instance_norm(x, im, iv, use_input_stats=True, momentum=0.3,
                                              eps=1e-3)
        b = torch.nn.functional.batch_norm(x, bm, bv, training=True, momentum=0.2, eps=1e-4)
        return a + b


def _norm_inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    return (torch.randn(3, 4, 5, 6), torch.randn(4), torch.rand(4) + 0.5, torch.randn(4),
            torch.rand(4) + 0.5)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_norm_running_statistics_updates_are_explicit(target: str) -> None:
    eager_in, mine = _norm_inputs(), _norm_inputs()
    with torch.no_grad():
        expected = Norms()(*eager_in)
        compiled = accel.compile(Norms(), _norm_inputs(), target=target)
        out = compiled(*mine)
    assert not any(n.op == "aten" for n in compiled.graph.nodes)  # lowered, not a fallback
    assert [i for _, i in compiled.graph.meta["input_mutations"]] == [1, 2, 3, 4]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for a, e in zip(mine, eager_in, strict=True):
        torch.testing.assert_close(a, e)


def test_norm_running_statistics_updates_export_to_onnx(tmp_path) -> None:  # noqa: ANN001
    path = accel.export_onnx(Norms(), _norm_inputs(), tmp_path / "norms.onnx",
                             dynamic_batch=False)
    eager_in = _norm_inputs()
    with torch.no_grad():
        expected = Norms()(*eager_in)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), _norm_inputs(), strict=True)}
    out, *updated = sess.run(None, feed)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-5, atol=1e-5)
    for new, e in zip(updated, eager_in[1:], strict=True):
        torch.testing.assert_close(torch.from_numpy(new), e)


def test_a_training_batch_norm_module_is_still_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    with pytest.raises(CaptureError, match="call model.eval"):
        accel.compile(model, (torch.randn(2, 3, 8, 8),))
