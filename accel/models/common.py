"""Helpers shared by the built-in models: seeding, conv-BN blocks, BN statistics, inputs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from torch import nn

ModelT = TypeVar("ModelT", bound=nn.Module)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded, restoring the global RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def conv_bn(
    in_chans: int,
    out_chans: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> nn.Sequential:
    """Return a bias-free Conv2d followed by BatchNorm2d, as `Sequential(conv, bn)`."""
    conv = nn.Conv2d(
        in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False
    )
    return nn.Sequential(conv, nn.BatchNorm2d(out_chans))


def init_conv_weights(model: nn.Module) -> None:
    """Initialise conv weights He-normal (fan_in, ReLU) so activations keep their scale."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


@torch.no_grad()
def randomize_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every BatchNorm's running stats and affine params with random, well-scaled values."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_var.copy_(
                0.5 + torch.rand(n, generator=gen)
            )  # in [0.5, 1.5)
            if module.affine:
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))  # in [0.5, 1.5)
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model


@torch.no_grad()
def calibrate_bn_stats(
    model: nn.Module, example: torch.Tensor, seed: int = 0
) -> nn.Module:
    """Set BN running stats to those `model` sees on `example`, then jitter them randomly.

    With random weights, purely random running stats let activations grow without bound
    through deep multi-branch nets; calibrated stats keep every BN output near unit scale
    while staying far from the trivial mean 0 / var 1 that would make BN folding a no-op.
    """
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    model.train()
    model(example)
    model.train(was_training)
    gen = torch.Generator().manual_seed(seed + 1)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        n = m.num_features
        m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(n, generator=gen))
        m.running_var.mul_(0.8 + 0.4 * torch.rand(n, generator=gen)).clamp_(min=1e-3)
    return model


def randomize_and_calibrate_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Randomise BN affine params, calibrate running stats on random images, return eval model."""
    randomize_bn_stats(model, seed)
    calibration = make_image_inputs(model, 4, seed + 1, min(model.img_size, 128))[0]
    calibrate_bn_stats(model, calibration, seed)
    return model.eval()


def build_convnet(make: Callable[..., ModelT], config: dict[str, object], seed: int) -> ModelT:
    """``make(**config)`` seeded, He-initialised convs, random calibrated BN, in eval mode."""
    with seeded(seed):
        model = make(**config)
        init_conv_weights(model)
    return randomize_and_calibrate_bn(model, seed)


def make_image_inputs(
    model: nn.Module, batch_size: int, seed: int = 0, img_size: int | None = None
) -> tuple[torch.Tensor]:
    """Return one float32 [B, C, H, W] standard-normal image batch sized for `model`."""
    size = img_size if img_size is not None else model.img_size
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, model.in_chans, size, size, generator=gen),)


def count_parameters(model: nn.Module) -> int:
    """Return the number of parameter elements in `model` (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
