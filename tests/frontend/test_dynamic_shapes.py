"""Dynamic shapes end to end: the specification, automatic dynamic, guards, every executor,
torch.compile and ONNX export, on a real BERT-style encoder and a ViT."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.export import Dim

import accel
from accel.models import get_model

SHAPES = [(2, 16), (3, 7), (5, 33)]


@pytest.fixture(scope="module")
def bert() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    return get_model("bert_small_test", batch_size=2)


def _tokens(b: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(b * 100 + s)
    ids = torch.randint(0, 1000, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.int64)
    mask[0, s // 2:] = 0  # padding in the first row
    return ids, mask


def _first(out: object) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]  # type: ignore[index]


def _check(compiled: accel.CompiledModel, model: torch.nn.Module, shapes=SHAPES) -> None:
    for b, s in shapes:
        ids, mask = _tokens(b, s)
        with torch.no_grad():
            torch.testing.assert_close(_first(compiled(ids, mask)), _first(model(ids, mask)),
                                       atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_auto_compiles_once_for_every_batch_and_length(bert, target: str) -> None:  # noqa: ANN001
    model, inputs = bert
    compiled = accel.compile(model, inputs, target=target, dynamic_shapes="auto")
    assert [str(v.type) for v in compiled.graph.inputs] == ["i64[batch,seq]"] * 2
    executor = compiled._first.executable  # noqa: SLF001
    _check(compiled, model)
    assert compiled.report.recompilations == 0 and compiled.specializations == 1
    assert compiled._first.executable is executor  # noqa: SLF001 - one session/executor


def test_torch_export_dims_name_the_symbols_and_bound_them(bert) -> None:  # noqa: ANN001
    model, inputs = bert
    b, s = Dim("b"), Dim("tokens", min=4, max=48)
    compiled = accel.compile(model, inputs, target="reference",
                             dynamic_shapes=({0: b, 1: s}, {0: b, 1: s}))
    assert str(compiled.graph.inputs[0].type) == "i64[b,tokens]"
    assert compiled.graph.symbols["tokens"].lo == 4 and compiled.graph.symbols["tokens"].hi == 48
    _check(compiled, model, [(2, 16), (3, 4), (2, 48)])
    ids, mask = _tokens(2, 49)
    with pytest.raises(accel.GuardError, match=r"input 0 dim 1 is 49, compiled for tokens in "
                                               r"\[4, 48\]"):
        compiled(ids, mask)
    with pytest.raises(accel.GuardError, match="rank 3"):  # a rank change still raises
        compiled(ids[None], mask[None])


def test_the_model_bounds_auto_ranges(bert) -> None:  # noqa: ANN001
    """torch.export infers seq <= 64 (the position table): 65 is an error, not a crash."""
    model, inputs = bert
    compiled = accel.compile(model, inputs, target="reference", dynamic_shapes="auto")
    assert compiled.graph.symbols["seq"].hi == 64
    with pytest.raises(accel.GuardError, match="seq in"):
        compiled(*_tokens(2, 65))


def test_automatic_dynamic_recompiles_once_then_reuses(bert) -> None:  # noqa: ANN001
    model, inputs = bert
    compiled = accel.compile(model, inputs, target="reference")
    assert compiled.graph.inputs[0].type.is_static
    _check(compiled, model, [(2, 16), (2, 20)])
    assert compiled.report.recompilations == 1  # seq changed: made symbolic
    _check(compiled, model, [(2, 9), (2, 40), (2, 64)])
    assert compiled.report.recompilations == 1
    _check(compiled, model, [(1, 16)])  # size 1: its own static specialization
    assert compiled.report.recompilations == 2


def test_an_example_of_size_one_serves_itself_then_one_symbolic_graph() -> None:
    """A graph with a symbolic batch is traced at 2 and does not take batch 1, so a size-1
    example compiles static first (it serves the example's calls with no recompile); the
    first other batch compiles the symbolic graph, which then serves every later batch."""
    model, inputs = get_model("vit_small_test", batch_size=1)
    compiled = accel.compile(model, inputs, target="reference", dynamic_shapes="auto")
    assert str(compiled.graph.inputs[0].type) == "f32[1,3,32,32]"
    for b in (1, 3, 6, 1, 4):
        x = torch.randn(b, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
    assert compiled.report.recompilations == 1  # batch 3; 6 and 4 reuse it
    assert compiled.specializations == 2
    from accel.export import optimized_graph  # export keeps the batch axis symbolic

    graph = optimized_graph(model, inputs, dynamic_shapes="auto")
    assert str(graph.inputs[0].type) == "f32[batch,3,32,32]"


def test_triton_executor_serves_every_size_from_one_lowering(bert) -> None:  # noqa: ANN001
    model, inputs = bert
    compiled = accel.compile(model, inputs, target="cuda", options={"interpret": True},
                             dynamic_shapes="auto")
    assert compiled.report.executor == "triton"
    _check(compiled, model)
    assert compiled.report.recompilations == 0
    ex = compiled._first.executable  # noqa: SLF001
    arena = ex.schedule.arena(torch.device("cpu"))
    assert arena.nbytes > 0  # grown to the largest call, reused by the others


def test_invalid_specifications_are_clear_errors(bert) -> None:  # noqa: ANN001
    model, inputs = bert
    with pytest.raises(accel.AccelTypeError, match="dynamic_shapes='everything'"):
        accel.compile(model, inputs, dynamic_shapes="everything")
    with pytest.raises(accel.CaptureError, match="could not capture"):
        accel.compile(model, inputs, dynamic_shapes=({0: Dim("b")},))  # one entry, two inputs


def test_export_onnx_writes_named_dynamic_axes(bert, tmp_path) -> None:  # noqa: ANN001
    model, inputs = bert
    path = accel.export_onnx(model, inputs, tmp_path / "bert.onnx", dynamic_shapes="auto")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [["batch", "seq"]] * 2
    for b, s in SHAPES:
        ids, mask = _tokens(b, s)
        (out,) = sess.run(None, {"input0": ids.numpy(), "input1": mask.numpy()})[:1]
        with torch.no_grad():
            np.testing.assert_allclose(out, _first(model(ids, mask)).numpy(), atol=1e-4)


def test_torch_compile_lengths_compile_twice_then_reuse(bert) -> None:  # noqa: ANN001
    """Dynamo's automatic dynamic: a static graph, then one with a symbolic length; accel
    compiles each once and serves every later length without compiling."""
    model, _ = bert
    torch._dynamo.reset()
    start = len(accel.reports())
    compiled = torch.compile(model, backend="accel", options={"target": "reference"})
    with torch.no_grad():
        for s in (16, 24, 32, 40, 9):
            ids, mask = _tokens(2, s)
            torch.testing.assert_close(_first(compiled(ids, mask)), _first(model(ids, mask)),
                                       atol=1e-4, rtol=1e-4)
    reports = accel.reports()[start:]
    assert len(reports) == 2 and all(r.recompilations == 0 and not r.eager_fallbacks
                                     for r in reports)


def test_torch_compile_dynamic_true_compiles_once(bert) -> None:  # noqa: ANN001
    model, _ = bert
    torch._dynamo.reset()
    start = len(accel.reports())
    compiled = torch.compile(model, backend="accel", dynamic=True,
                             options={"target": "reference"})
    with torch.no_grad():
        for b, s in SHAPES:
            ids, mask = _tokens(b, s)
            torch.testing.assert_close(_first(compiled(ids, mask)), _first(model(ids, mask)),
                                       atol=1e-4, rtol=1e-4)
    (report,) = accel.reports()[start:]
    assert report.recompilations == 0 and not report.eager_fallbacks


def test_batch_one_serving_keeps_the_length_symbolic(bert) -> None:  # noqa: ANN001
    """Batch 1 is outside the symbolic range (the graph is traced at >= 2): one recompile
    with the batch static and the length still symbolic serves every later length."""
    model, _ = bert
    compiled = accel.compile(model, _tokens(1, 16), target="reference", dynamic_shapes="auto")
    _check(compiled, model, [(1, 8), (1, 12), (1, 20), (1, 33), (3, 9)])
    assert compiled.report.recompilations == 1
    one = next(s for s in compiled._specs if s.graph.inputs[0].type.shape[0] == 1)  # noqa: SLF001
    assert str(one.graph.inputs[0].type) == "i64[1,seq]"


class _HalvesTheLength(torch.nn.Module):
    """reshape(b, s // 2, 2 * d): symbolic capture of the length is refused here."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        return x.reshape(b, s // 2, 2 * d).sum(-1)


def test_automatic_dynamic_falls_back_to_static_when_dims_cannot_be_symbolic() -> None:
    model = _HalvesTheLength()
    compiled = accel.compile(model, torch.randn(2, 8, 4), target="reference")
    for s in (6, 10, 12):
        x = torch.randn(2, s, 4)
        torch.testing.assert_close(compiled(x), model(x))
    assert compiled.report.recompilations >= 1


def test_range_errors_do_not_depend_on_call_order(bert) -> None:  # noqa: ANN001
    model, inputs = bert
    b = Dim("b", min=2, max=4)
    compiled = accel.compile(model, inputs, target="reference",
                             dynamic_shapes=({0: b}, {0: b}))
    compiled(*_tokens(1, 16))  # batch 1: a static specialization, now tried first
    with pytest.raises(accel.GuardError, match="compiled for b in"):
        compiled(*_tokens(9, 16))
