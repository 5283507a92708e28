"""Tests for the built-in model zoo (accel.models): small models run, big ones are sized right."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from accel.models import MODELS, get_model, list_models
from accel.models.common import count_parameters
from accel.models.vit import Mlp

SMALL_MODELS = {
    # name: expected output shape at batch 2
    "vit_small_test": (2, 10),
    "vit_tiny_digits": (2, 10),
    "bert_small_test": (2, 16, 64),
    "resnet_small_test": (2, 10),
    "repvgg_small_test": (2, 10),
    "mobileone_small_test": (2, 10),
}

BIG_MODEL_PARAMS = {
    # name: (expected parameter count, relative tolerance)
    "vit_s16": (22.05e6, 0.02),  # timm vit_small_patch16_224: 22,050,664
    "bert_base": (109.5e6, 0.02),  # 108,891,648 without the (optional) pooler
    "resnet50": (25.56e6, 0.01),  # torchvision resnet50: 25,557,032
    "repvgg_a0": (9.11e6, 0.01),  # RepVGG paper, train-time A0: 9.11M
    "mobileone_s0": (5.29e6, 0.01),  # train-time, k=4 (2.08M once reparameterised)
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _forward(name: str, seed: int = 0, **overrides: object) -> torch.Tensor:
    model, inputs = get_model(name, batch_size=2, seed=seed, **overrides)
    with torch.no_grad():
        return model(*inputs)


def test_registry_lists_every_family() -> None:
    names = list_models()
    assert names == sorted(MODELS)
    for name in [*SMALL_MODELS, *BIG_MODEL_PARAMS, "vit_b16"]:
        assert name in names
        assert MODELS[name].name == name and MODELS[name].description
    assert MODELS["vit_s16"].default_batch_size == 8
    assert MODELS["resnet50"].default_batch_size == 1


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        get_model("no_such_model")


def test_bad_override_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="vit_small_test"):
        get_model("vit_small_test", no_such_field=1)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_small_model_runs_and_is_deterministic(name: str) -> None:
    model, inputs = get_model(name, batch_size=2)
    assert not model.training
    with torch.no_grad():
        out = model(*inputs)
    assert tuple(out.shape) == SMALL_MODELS[name]
    assert torch.isfinite(out).all()
    assert 1e-3 < out.std() < 1e3
    torch.testing.assert_close(_forward(name, seed=0), out, rtol=0, atol=0)
    assert not torch.allclose(_forward(name, seed=1), out)


def test_default_batch_size_and_input_options() -> None:
    _, (images,) = get_model("vit_tiny_digits")
    assert images.shape == (1, 1, 8, 8) and images.dtype == torch.float32
    _, (ids, mask) = get_model("bert_small_test", batch_size=3, seq_len=8)
    assert ids.shape == mask.shape == (3, 8) and ids.dtype == mask.dtype == torch.int64
    assert mask[0].all() and not mask[1].all() and mask[1, 0] == 1


@pytest.mark.parametrize("name", sorted(BIG_MODEL_PARAMS))
def test_big_model_parameter_count(name: str) -> None:
    model, inputs = get_model(name)
    expected, rel = BIG_MODEL_PARAMS[name]
    assert count_parameters(model) == pytest.approx(expected, rel=rel)
    assert inputs[0].shape[0] == MODELS[name].default_batch_size


def test_bert_mask_hides_padding() -> None:
    model, (ids, mask) = get_model("bert_small_test", batch_size=2)
    altered = ids.clone()
    altered[1, mask[1] == 0] = 7
    with torch.no_grad():
        out, out_altered = model(ids, mask), model(altered, mask)
    keep = mask[1] == 1
    torch.testing.assert_close(out[1, keep], out_altered[1, keep])
    torch.testing.assert_close(out[0], out_altered[0], rtol=0, atol=0)


def test_vit_idle_ffn_matches_formula() -> None:
    torch.manual_seed(0)
    mlp = Mlp(dim=8, hidden=16, idle_ratio=0.25)
    assert mlp.n_active == 12
    x = torch.randn(2, 3, 8)
    h = mlp.fc1(x)
    expected = mlp.fc2(torch.cat([nn.functional.gelu(h[:, :, :12]), h[:, :, 12:]], -1))
    torch.testing.assert_close(mlp(x), expected)


def test_vit_options_run() -> None:
    out = _forward(
        "vit_small_test",
        qk_norm=True,
        distilled=True,
        ffn_idle_ratio=0.5,
        layer_scale=None,
    )
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_repvgg_groups_shrink_the_model() -> None:
    plain, _ = get_model("repvgg_small_test")
    grouped, inputs = get_model("repvgg_small_test", groups=2)
    assert count_parameters(grouped) < count_parameters(plain)
    with torch.no_grad():
        assert grouped(*inputs).shape == (1, 10)


@pytest.mark.parametrize(
    "name", ["resnet_small_test", "repvgg_small_test", "mobileone_small_test"]
)
def test_batchnorm_statistics_are_nontrivial(name: str) -> None:
    model, _ = get_model(name)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for bn in norms:
        assert (bn.running_var > 0).all()
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))
