"""Built-in models used by accel's demo, CLI, tests and benchmarks, behind a small registry.

model, inputs = get_model("resnet_small_test", batch_size=2)
model(*inputs)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from accel.errors import AccelValueError
from accel.models.bert import BERT_CONFIGS, BERT_SEQ_LENS, build_bert, make_bert_inputs
from accel.models.common import make_image_inputs
from accel.models.mobileone import MOBILEONE_CONFIGS, build_mobileone
from accel.models.repvgg import REPVGG_CONFIGS, build_repvgg
from accel.models.resnet import RESNET_CONFIGS, build_resnet
from accel.models.vit import VIT_CONFIGS, build_vit

__all__ = ["MODELS", "ModelSpec", "get_model", "list_models"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered built-in model: how to build it and how to make example inputs."""

    name: str
    """Registry key, e.g. "vit_s16"."""
    description: str
    """One-line human description."""
    builder: Callable[..., nn.Module]
    """builder(seed=..., **config_overrides) -> model in eval mode."""
    default_batch_size: int
    """Batch size of the example inputs when none is asked for."""
    make_inputs: Callable[..., tuple[torch.Tensor, ...]]
    """make_inputs(model, batch_size, seed=..., **input_options) -> example inputs."""


_DESCRIPTIONS: dict[str, str] = {
    "vit_s16": "ViT-S/16 (DeiT-S layout), 224px, dim 384, 12 blocks, 6 heads, 1000 classes",
    "vit_b16": "ViT-B/16, 224px, dim 768, 12 blocks, 12 heads, 1000 classes",
    "vit_tiny_digits": "tiny ViT for 8x8 one-channel digits (scikit-learn), patch 2, 10 classes",
    "vit_small_test": "tiny ViT with LayerScale for fast tests, 32px, patch 8, dim 64, 2 blocks",
    "bert_base": "BERT-base encoder (post-norm), hidden 768, 12 layers, seq 128",
    "bert_small_test": "tiny BERT encoder for fast tests, hidden 64, 2 layers, seq 16",
    "resnet50": "ResNet-50 (Bottleneck [3,4,6,3]), 224px, random BN statistics",
    "resnet_small_test": "tiny Bottleneck ResNet for fast tests, 32px, width 8",
    "repvgg_a0": "RepVGG-A0 in training-time multi-branch form, 224px, random BN statistics",
    "repvgg_small_test": "tiny training-time RepVGG for fast tests, 32px",
    "mobileone_s0": "MobileOne-S0 in training-time form (k=4 branches), 224px, random BN stats",
    "mobileone_small_test": "tiny training-time MobileOne (k=2) for fast tests, 32px",
}


def _specs() -> dict[str, ModelSpec]:
    """Build the registry from each family's named configs."""
    families: list[tuple[dict[str, object], Callable[..., nn.Module]]] = [
        (VIT_CONFIGS, build_vit),
        (BERT_CONFIGS, build_bert),
        (RESNET_CONFIGS, build_resnet),
        (REPVGG_CONFIGS, build_repvgg),
        (MOBILEONE_CONFIGS, build_mobileone),
    ]
    specs = {}
    for configs, build in families:
        for name in configs:
            if name in BERT_SEQ_LENS:
                make_inputs = functools.partial(
                    make_bert_inputs, seq_len=BERT_SEQ_LENS[name]
                )
            else:
                make_inputs = make_image_inputs
            specs[name] = ModelSpec(
                name=name,
                description=_DESCRIPTIONS[name],
                builder=functools.partial(build, name),
                default_batch_size=8 if name == "vit_s16" else 1,
                make_inputs=make_inputs,
            )
    return specs


MODELS: dict[str, ModelSpec] = _specs()
"""Every built-in model, by name."""


def list_models() -> list[str]:
    """Return the names of all built-in models, sorted."""
    return sorted(MODELS)


def get_model(
    name: str, batch_size: int | None = None, seed: int = 0, **overrides: object
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """Build a built-in model (eval mode) and its example inputs; overrides go to either side.

    Keyword overrides naming an input option (`seq_len`, `img_size` for inputs only) go to
    the input maker; the rest override the model config (e.g. `depth=2`, `num_classes=10`).
    """
    spec = MODELS.get(name)
    if spec is None:
        raise AccelValueError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        )
    input_params = set(inspect.signature(spec.make_inputs).parameters) - {
        "model",
        "batch_size",
    }
    input_options = {k: v for k, v in overrides.items() if k in input_params}
    config_overrides = {k: v for k, v in overrides.items() if k not in input_params}
    try:
        model = spec.builder(seed=seed, **config_overrides)
    except TypeError as exc:
        raise AccelValueError(
            f"bad override for model {name!r}: {exc}; pass config fields of the model "
            f"or input options {sorted(input_params - {'seed'})}"
        ) from exc
    batch = spec.default_batch_size if batch_size is None else batch_size
    return model, spec.make_inputs(model, batch, seed=seed, **input_options)
