"""The OpenVINO executor: the optimized IR through standard-op ONNX into OpenVINO, fp32 and
int8, dynamic shapes from one compile; the cpu target measures it against the others; and
a graph whose weights an executor owns drops its own copy."""

from __future__ import annotations

import builtins

import pytest
import torch

import accel
from accel.backends.openvino import lower_openvino
from accel.errors import ExportError, GraphError
from accel.ir.interpreter import interpret
from accel.models import get_model
from accel.testing import assert_matches_eager

pytest.importorskip("openvino")


def _bert() -> tuple[torch.nn.Module, torch.Tensor]:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, vocab_size=500)
    return BertModel(cfg).eval(), torch.randint(0, 500, (2, 12))


def test_openvino_runs_a_vit_like_eager() -> None:
    model, inputs = get_model("vit_small_test", batch_size=2)
    cm = accel.compile(model, inputs, target="cpu", options={"executor": "openvino"})
    assert cm.report.executor == "openvino"
    assert_matches_eager(cm, model, inputs)


def test_openvino_serves_every_shape_from_one_compile() -> None:
    model, ids = _bert()
    cm = accel.compile(model, (ids,), options={"executor": "openvino"},
                       dynamic_shapes="auto")
    for b, s in [(2, 12), (3, 7), (5, 30)]:
        x = torch.randint(0, 500, (b, s))
        torch.testing.assert_close(cm(x)["last_hidden_state"], model(x).last_hidden_state,
                                   atol=1e-4, rtol=1e-4)
    assert cm.report.recompilations == 0


def test_openvino_int8_matches_onnxruntime_int8() -> None:
    """The same int8 graph (dynamic per-token activations) on both session executors."""
    model, ids = _bert()
    pipe = "default,quantize{mode=int8-dynamic}"
    ov = accel.compile(model, (ids,), pipeline=pipe, options={"executor": "openvino"})
    ort = accel.compile(model, (ids,), pipeline=pipe, options={"executor": "ort"})
    a, b = ov(ids)["last_hidden_state"], ort(ids)["last_hidden_state"]
    ref = model(ids).last_hidden_state
    cos = torch.nn.functional.cosine_similarity(a.flatten(), ref.flatten(), dim=0)
    assert cos > 0.99
    torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


def test_auto_choice_measures_openvino_too() -> None:
    model, inputs = get_model("vit_small_test", batch_size=2)
    cm = accel.compile(model, inputs, target="cpu")
    (line,) = [n for n in cm.report.lowering if n.startswith("executor:")]
    assert "OpenVINO" in line and "onnxruntime" in line and "ms" in line
    assert cm.report.executor in ("onnxruntime", "openvino", "aten")
    assert "choice" in cm.report.stages


def test_prefer_memory_leaves_openvino_out() -> None:
    model, inputs = get_model("vit_small_test", batch_size=2)
    cm = accel.compile(model, inputs, target="cpu", options={"prefer": "memory"})
    (line,) = [n for n in cm.report.lowering if n.startswith("executor:")]
    assert "OpenVINO not tried (prefer=memory)" in line and "onnxruntime" in line
    assert cm.report.executor in ("onnxruntime", "aten")
    assert_matches_eager(cm, model, inputs)
    with pytest.raises(accel.AccelValueError, match="prefer"):
        accel.compile(model, inputs, target="cpu", options={"prefer": "small"})


def test_int8_graphs_do_not_time_aten() -> None:
    model, ids = _bert()
    cm = accel.compile(model, (ids,), pipeline="default,quantize{mode=int8-dynamic}")
    (line,) = [n for n in cm.report.lowering if n.startswith("executor:")]
    assert "aten not timed" in line and "torch._int_mm" in line


def test_missing_openvino_is_a_clear_error(monkeypatch) -> None:  # noqa: ANN001
    real = builtins.__import__

    def fake(name, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real(name, *a, **k)

    graph = accel.compile(torch.nn.Linear(4, 4).eval(), (torch.randn(2, 4),),
                          target="reference").graph
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ExportError, match=r"accel\[openvino\]"):
        lower_openvino(graph)


def test_session_executors_own_the_weights(tmp_path) -> None:  # noqa: ANN001
    """After lowering to onnxruntime/OpenVINO the graph keeps shapes, not a second copy of
    the weights; it still prints and exports, but is not interpreted."""
    model, inputs = get_model("vit_small_test", batch_size=2)
    cm = accel.compile(model, inputs, target="cpu", options={"executor": "ort"})
    graph = cm.graph
    assert graph.constants_released
    big = [t for t in graph.constants.values() if t.numel() * t.element_size() >= 4096]
    assert big and all(t.device.type == "meta" for t in big)
    assert "linear" in str(graph)
    with pytest.raises(GraphError, match="target='reference'"):
        interpret(graph, list(inputs))
    assert_matches_eager(cm, model, inputs)
    import numpy as np
    import onnxruntime

    path = accel.export_onnx(cm, inputs, tmp_path / "m.onnx")  # compiles a copy with weights
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)})
    np.testing.assert_allclose(out, model(*inputs).detach().numpy(), atol=1e-4, rtol=1e-4)
    ref = accel.compile(model, inputs, target="cpu", options={"executor": "aten"}).graph
    assert not ref.constants_released  # aten runs the graph itself


@pytest.mark.parametrize("winner", ["aten", "session"])
def test_weights_leave_memory_while_sessions_are_timed(monkeypatch, winner: str) -> None:  # noqa: ANN001
    """While the cpu target builds and times runtime sessions, the graph's weights wait in a
    file (so compiling holds one copy next to the session, not two); when aten wins they are
    mapped back and the graph runs on them."""
    from accel.targets import cpu

    monkeypatch.setattr(cpu._Spill, "MIN_BYTES", 0)
    released = []
    real = cpu.time_executor

    def timed(ex, inputs, runs=cpu.TIMED_RUNS, warmup=True):  # noqa: ANN001, ANN202
        if ex.name != "aten":
            released.append(ex.graph.constants_released)
        fast = (ex.name == "aten") == (winner == "aten")
        return real(ex, inputs, runs=1, warmup=False) * (0.01 if fast else 100.0)

    monkeypatch.setattr(cpu, "time_executor", timed)
    model, inputs = get_model("vit_small_test", batch_size=2)
    cm = accel.compile(model, inputs, target="cpu")
    assert released and all(released)  # every session was timed without the graph's copy
    if winner == "aten":
        assert cm.report.executor == "aten" and not cm.graph.constants_released
    else:
        assert cm.report.executor in ("onnxruntime", "openvino")
    assert_matches_eager(cm, model, inputs)
    lossy = accel.compile(model, inputs, target="cpu",  # accuracy is measured before lowering
                          pipeline="default,quantize{mode=int8-dynamic}")
    assert lossy.report.accuracy
