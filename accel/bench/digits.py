"""Train the built-in `vit_tiny_digits` ViT on scikit-learn's 8x8 digits on CPU, cached.

Weights, in the order they are looked for (all keyed by the seed, epochs, config overrides and
the training recipe version):

1. shipped: the default model (seed 0, 40 epochs, default overrides) is in the package as
   ``accel/bench/digits_vit_seed0.pt`` (fp16 state_dict, ~420 KB; loaded as fp32, every test
   prediction the same as the fp32 original's, logits within 1e-2), so a fresh checkout
   needs no training and nothing is downloaded;
2. cached: ``<ACCEL_CACHE_DIR or ~/.cache/accel>/digits_vit_<hash>.pt`` (fp32), written after
   training any other configuration (e.g. the other seeds of benchmarks/tome.py);
3. trained here: about 4 minutes on a 2-core CPU.

``python benchmarks/digits.py --ship`` rewrites the shipped file from this recipe (train or
cache, never the shipped file itself); bump :data:`RECIPE_VERSION` and re-ship together.

Images: the 8x8 digits are upsampled bilinearly to IMG_SIZE x IMG_SIZE (16x16) and cut into
2x2 patches, so the model sees 64 patch tokens + a class token = 65 tokens, like a real ViT
(ViT-S/16 at 224px sees 196 + 1). Neighbouring patches are correlated and the border is
background, which is the redundancy token reduction exploits; the original 8x8 / patch-2 model
(17 tokens) left almost nothing to merge. Default config: dim 64, depth 4, heads 4.

Splits: a stratified 20% test split, then 20% of the remaining training images as a validation
split (x_val / y_val) that the model never trains on, for choosing token-reduction settings
without looking at the test set.

Recipe: AdamW (lr 2e-3, weight decay 0.05), one-cycle schedule with 10% warmup, batch 32, label
smoothing 0.1, 40 epochs, one thread. Measured when the recipe was set: val 97.22% (288
images), test 97.78% (360 images), 285 s wall on a 2-core machine shared with three other busy
processes (about 3.5 s per epoch, ~2 min, with one other process). The shipped weights were
trained by this same code later (torch 2.13.0+cpu, two trainings byte-identical): train
99.91%, val 92.71%, test 92.50% (the fp32 and the shipped fp16 weights alike); the cause of
the gap to the earlier figures was not found. 32x32 with patch 4 (also 65 tokens) reached 96.4%
test at 30 epochs; random-shift augmentation slowed convergence too much for the time budget.

    python benchmarks/digits.py            # loads (or trains) and prints val/test accuracy
    python benchmarks/digits.py --ship     # rewrite the shipped weights from this recipe

A workload of the bench suite (:mod:`accel.bench.suite`), so it lives in the library; the
benchmarks import it from here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from accel.models.vit import build_vit

RECIPE_VERSION = 3
"""Bump when the training recipe changes, so cached weights are not reused."""

IMG_SIZE = 16
"""Side the 8x8 digits are bilinearly upsampled to before patchifying."""

DEFAULT_OVERRIDES: dict[str, object] = {"img_size": IMG_SIZE, "patch": 2}
"""Config overrides applied to `vit_tiny_digits` unless the caller gives others."""

LR = 2e-3
"""Peak AdamW learning rate (one-cycle: 10% warmup, cosine decay)."""

DEFAULT_SEED = 0
DEFAULT_EPOCHS = 40

SHIPPED_WEIGHTS = Path(__file__).with_name("digits_vit_seed0.pt")
"""The default model's weights, shipped in the package: ``{"key": <cache key>, "state_dict":
fp16 tensors, "accuracy": {"train", "val", "test"}}`` (see ``--ship``)."""


def cache_dir() -> Path:
    """Where trained state_dicts are cached: ``ACCEL_CACHE_DIR`` or ``~/.cache/accel``."""
    from accel import env

    return env.cache_dir()


@dataclass
class DigitsTask:
    """A trained digits ViT plus its normalized train/test data."""

    model: nn.Module
    """The trained ViT, in eval mode."""
    x_train: torch.Tensor
    """Training images, float32 [N, 1, S, S] (S = IMG_SIZE), normalized to zero mean / unit std."""
    y_train: torch.Tensor
    """Training labels, int64 [N]."""
    x_test: torch.Tensor
    """Test images, float32 [M, 1, S, S], normalized with the training statistics."""
    y_test: torch.Tensor
    """Test labels, int64 [M]."""
    x_val: torch.Tensor
    """Validation images (held out of training), float32 [V, 1, S, S], for tuning."""
    y_val: torch.Tensor
    """Validation labels, int64 [V]."""
    train_seconds: float = 0.0
    """Wall time spent training (0 when loaded)."""
    weights: str = "trained"
    """Where the weights came from: "shipped", "cached" or "trained"."""

    def calib_batches(self, n: int, batch_size: int) -> list[tuple[torch.Tensor]]:
        """Return n calibration input tuples of batch_size training images each (cycling)."""
        out = []
        total = self.x_train.shape[0]
        for i in range(n):
            idx = torch.arange(i * batch_size, (i + 1) * batch_size) % total
            out.append((self.x_train[idx],))
        return out

    def accuracy(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = 256,
    ) -> float:
        """Top-1 accuracy in percent of fn (images -> logits) on (x, y), in batches."""
        correct = 0
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                logits = fn(x[start : start + batch_size])
                if isinstance(logits, (list, tuple)):
                    logits = logits[0]
                correct += int((logits.argmax(-1) == y[start : start + batch_size]).sum())
        return 100.0 * correct / x.shape[0]


DigitsSplit = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                    torch.Tensor]
"""(x_train, y_train, x_val, y_val, x_test, y_test)."""


def load_digits_split(
    seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.2,
    img_size: int = IMG_SIZE,
) -> DigitsSplit:
    """Deterministic stratified train/val/test split of sklearn digits, upsampled to img_size
    (bilinear) and normalized with the training statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1)  # [N,1,8,8], 0..16
    if img_size != x.shape[-1]:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    y = torch.tensor(data.target, dtype=torch.int64)
    idx_train, idx_test = train_test_split(
        list(range(len(y))), test_size=test_fraction, random_state=seed, stratify=y.numpy()
    )
    idx_train, idx_val = train_test_split(
        idx_train, test_size=val_fraction, random_state=seed, stratify=y[idx_train].numpy()
    )
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return x[idx_train], y[idx_train], x[idx_val], y[idx_val], x[idx_test], y[idx_test]


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering range(n) once."""
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> None:
    """AdamW + one-cycle cosine schedule, batch 32, label smoothing."""
    gen = torch.Generator().manual_seed(seed)
    batch_size = 32
    steps = epochs * ((x.shape[0] + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, pct_start=0.1, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for idx in _batches(x.shape[0], batch_size, gen):
            xb = x[idx]
            loss = F.cross_entropy(model(xb), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def _cache_key(seed: int, epochs: int, overrides: dict[str, object]) -> str:
    """What identifies a trained model: (seed, epochs, overrides, recipe version)."""
    return json.dumps(
        {"seed": seed, "epochs": epochs, "overrides": overrides, "recipe": RECIPE_VERSION},
        sort_keys=True,
        default=str,
    )


def _cache_path(seed: int, epochs: int, overrides: dict[str, object]) -> Path:
    """Cache file for this (seed, epochs, overrides, recipe version)."""
    digest = hashlib.sha256(_cache_key(seed, epochs, overrides).encode()).hexdigest()[:16]
    return cache_dir() / f"digits_vit_{digest}.pt"


def load_shipped(path: Path = SHIPPED_WEIGHTS) -> dict[str, object] | None:
    """The shipped weights file's contents, None when it is missing or unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError):
        return None


def _shipped_state(key: str) -> dict[str, torch.Tensor] | None:
    """The shipped state_dict (fp32) when it was trained with exactly this key, else None."""
    shipped = load_shipped()
    if not isinstance(shipped, dict) or shipped.get("key") != key:
        return None
    return {k: v.float() for k, v in shipped["state_dict"].items()}  # type: ignore[union-attr]


def train_digits_vit(
    seed: int = DEFAULT_SEED, epochs: int = DEFAULT_EPOCHS, use_cache: bool = True,
    use_shipped: bool = True, **overrides: object,
) -> DigitsTask:
    """Load (shipped weights, then the cache) or train vit_tiny_digits on sklearn digits;
    returns a DigitsTask. ``use_cache=False`` always trains and writes nothing;
    ``use_shipped=False`` ignores the shipped weights."""
    cfg_overrides = {**DEFAULT_OVERRIDES, **overrides}
    img_size = int(cfg_overrides["img_size"])  # type: ignore[call-overload]
    x_train, y_train, x_val, y_val, x_test, y_test = load_digits_split(seed, img_size=img_size)
    model = build_vit("vit_tiny_digits", seed=seed, **cfg_overrides)
    seconds, source = 0.0, "trained"
    if use_cache and use_shipped:
        state = _shipped_state(_cache_key(seed, epochs, cfg_overrides))
        if state is not None:
            model.load_state_dict(state)
            source = "shipped"
    path = _cache_path(seed, epochs, cfg_overrides)
    if use_cache and source != "shipped" and path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            source = "cached"
        except (RuntimeError, EOFError, OSError):
            path.unlink(missing_ok=True)  # corrupt entry: retrain below
    if source == "trained":
        start = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matmuls: one thread avoids oversubscription overhead
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                _train(model, x_train, y_train, seed, epochs)
        finally:
            torch.set_num_threads(threads)
        seconds = time.perf_counter() - start
        if use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save(model.state_dict(), tmp)
                tmp.replace(path)
            except OSError:
                pass  # a read-only cache only costs the next run a retraining
    model.eval()
    return DigitsTask(model, x_train, y_train, x_test, y_test, x_val, y_val,
                      train_seconds=seconds, weights=source)


def ship(path: Path = SHIPPED_WEIGHTS) -> DigitsTask:
    """Write the default model's weights (fp16) to ``path``, from the cache or a training, and
    check that the fp16 weights predict like the fp32 ones."""
    task = train_digits_vit(use_shipped=False)  # from the recipe, not the file being replaced
    state = task.model.state_dict()
    half = {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}
    check = build_vit("vit_tiny_digits", seed=DEFAULT_SEED, **DEFAULT_OVERRIDES)
    check.load_state_dict({k: v.float() for k, v in half.items()})
    check.eval()
    with torch.no_grad():
        same = bool((check(task.x_test).argmax(-1) == task.model(task.x_test).argmax(-1)).all())
    if not same:
        raise RuntimeError("fp16 weights change test predictions; not shipped")
    accuracy = {split: task.accuracy(check, x, y) for split, x, y in (
        ("train", task.x_train, task.y_train), ("val", task.x_val, task.y_val),
        ("test", task.x_test, task.y_test))}
    key = _cache_key(DEFAULT_SEED, DEFAULT_EPOCHS, dict(DEFAULT_OVERRIDES))
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "state_dict": half, "accuracy": accuracy,
                "torch": str(torch.__version__)}, tmp)
    tmp.replace(path)
    return task


def main(argv: list[str] | None = None) -> None:
    """Load (or train) the digits ViT and print its accuracy; ``--ship`` rewrites the shipped
    weights."""
    parser = argparse.ArgumentParser(description="the digits ViT of the bench suite")
    parser.add_argument("--ship", action="store_true",
                        help=f"rewrite {SHIPPED_WEIGHTS.name} (fp16) from this recipe")
    args = parser.parse_args(argv)
    task = ship() if args.ship else train_digits_vit()
    val = task.accuracy(task.model, task.x_val, task.y_val)
    acc = task.accuracy(task.model, task.x_test, task.y_test)
    how = (f"trained in {task.train_seconds:.1f}s" if task.weights == "trained"
           else f"{task.weights} weights")
    print(
        f"vit_tiny_digits {DEFAULT_OVERRIDES}: val top-1 {val:.2f}% ({task.x_val.shape[0]} "
        f"images), test top-1 {acc:.2f}% ({task.x_test.shape[0]} images), {how}"
        + (f"; wrote {SHIPPED_WEIGHTS}" if args.ship else "")
    )


if __name__ == "__main__":
    main()
