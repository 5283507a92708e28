"""End-to-end: accel.compile and torch.compile(backend="accel") on the built-in models."""

import pytest
import torch

import accel
from accel.models import get_model
from accel.testing import assert_matches_eager

SMALL = ["vit_small_test", "bert_small_test", "resnet_small_test", "repvgg_small_test",
         "mobileone_small_test"]


@pytest.mark.parametrize("name", SMALL)
def test_accel_compile_matches_eager(name: str) -> None:
    model, inputs = get_model(name, batch_size=2)
    compiled = accel.compile(model, inputs, debug=True)
    assert_matches_eager(compiled, model, inputs, atol=1e-5)


@pytest.mark.parametrize("name", ["vit_small_test", "resnet_small_test"])
def test_torch_compile_backend_matches_eager(name: str) -> None:
    torch._dynamo.reset()
    model, inputs = get_model(name, batch_size=2)
    compiled = torch.compile(model, backend="accel")
    assert_matches_eager(compiled, model, inputs, atol=1e-5)
