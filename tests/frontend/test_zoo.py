"""46 Hugging Face architectures (text encoders, decoders, ViTs, hierarchical and
convolutional vision models, audio encoders; accel/bench/zoo.py), each compiled once with a
dynamic batch (and length, for text and audio) and checked against eager at three other
shapes through accel.compile, torch.compile(backend="accel") and ONNX export into
onnxruntime. None may run an op through the aten fallback or recompile.
``python benchmarks/zoo.py`` writes the table, with torch.onnx.export(dynamo=True) beside."""

from __future__ import annotations

import pytest

from accel.bench.zoo import CASES, TOLERANCE, check

pytest.importorskip("transformers")

PATHS = ("accel.compile", "torch.compile", "onnx")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_zoo_model_matches_eager_at_every_shape(name: str, path: str) -> None:
    case = next(c for c in CASES if c.name == name)
    outcome = check(case, path)
    assert outcome.ok, f"{name} via {path}: {outcome.detail} (tolerance {TOLERANCE})"
    assert outcome.fallbacks == 0 and outcome.recompilations == 0, outcome


def test_the_zoo_covers_every_family() -> None:
    families = {c.family for c in CASES}
    assert families == {"text-encoder", "decoder", "vision", "hierarchical-vision",
                        "conv-vision", "audio"}
    assert len(CASES) >= 40
