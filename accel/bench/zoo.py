"""A zoo of Hugging Face architectures built from small configs (random weights, nothing
downloaded), each with inputs at any batch size and, for text and audio, any length.

Used by ``tests/frontend/test_zoo.py`` (accel's paths must match eager at three shapes
from one dynamic compile) and ``benchmarks/zoo.py`` (the table, with
``torch.onnx.export(dynamo=True)`` as the peer column).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

Inputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class ZooCase:
    """One architecture: how to build it and its inputs."""

    name: str
    family: str
    """``text-encoder``, ``decoder``, ``vision``, ``hierarchical-vision``, ``conv-vision``,
    ``audio``."""
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int, int], Inputs]
    """``inputs(batch, length)``; vision ignores the length."""
    dynamic_length: bool = True
    """Whether dim 1 (tokens, samples) is dynamic too (text, raw audio)."""

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(batch, length) of the compile and of the three checked calls."""
        return [(2, 16), (3, 9), (4, 24), (5, 32)] if self.dynamic_length else \
            [(2, 16), (3, 16), (4, 16), (5, 16)]


class FirstOutput(torch.nn.Module):
    """Calls a HF model with keyword tensors and returns its first output tensor."""

    def __init__(self, model: torch.nn.Module, *names: str) -> None:
        super().__init__()
        self.model, self.names = model.eval(), names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, tensors, strict=True)))
        if isinstance(out, torch.Tensor):
            return out
        first = out.to_tuple()[0] if hasattr(out, "to_tuple") else out[0]
        return first


def _tf() -> Any:
    import transformers

    return transformers


def _ids(b: int, s: int, vocab: int = 96) -> torch.Tensor:
    g = torch.Generator().manual_seed(b * 1000 + s)
    return torch.randint(3, vocab, (b, s), generator=g)


def _mask(b: int, s: int) -> torch.Tensor:
    m = torch.ones(b, s, dtype=torch.long)
    m[0, max(1, s * 2 // 3):] = 0  # the first sequence is padded
    return m


def _text(model_cls: str, config_cls: str, masked: bool = True, **cfg: Any) -> Callable:
    def build() -> torch.nn.Module:
        tf = _tf()
        config = getattr(tf, config_cls)(**cfg)
        names = ("input_ids", "attention_mask") if masked else ("input_ids",)
        return FirstOutput(getattr(tf, model_cls)(config), *names)
    return build


def _text_inputs(masked: bool = True) -> Callable[[int, int], Inputs]:
    def inputs(b: int, s: int) -> Inputs:
        return (_ids(b, s), _mask(b, s)) if masked else (_ids(b, s),)
    return inputs


def _vision(model_cls: str, config_cls: str, **cfg: Any) -> Callable:
    def build() -> torch.nn.Module:
        tf = _tf()
        return FirstOutput(getattr(tf, model_cls)(getattr(tf, config_cls)(**cfg)),
                           "pixel_values")
    return build


def _pixels(size: int = 32, channels: int = 3) -> Callable[[int, int], Inputs]:
    def inputs(b: int, s: int) -> Inputs:
        g = torch.Generator().manual_seed(b)
        return (torch.randn(b, channels, size, size, generator=g),)
    return inputs


def _audio(model_cls: str, config_cls: str, **cfg: Any) -> Callable:
    def build() -> torch.nn.Module:
        tf = _tf()
        return FirstOutput(getattr(tf, model_cls)(getattr(tf, config_cls)(**cfg)),
                           "input_values")
    return build


def _waveform(b: int, s: int) -> Inputs:
    g = torch.Generator().manual_seed(b * 7 + s)
    return (torch.randn(b, 400 + 40 * s, generator=g),)


_ENC = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            vocab_size=96, max_position_embeddings=128)
_DEC = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            vocab_size=96, max_position_embeddings=128)
_LLAMA = dict(_DEC, num_key_value_heads=2)
_VIT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            image_size=32, patch_size=8)
_WAV = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
            do_stable_layer_norm=False, feat_extract_norm="group")


def _case(name: str, family: str, build: Callable, inputs: Callable,
          dynamic_length: bool = True) -> ZooCase:
    return ZooCase(name, family, build, inputs, dynamic_length)


T, M = _text_inputs(True), _text_inputs(False)
CASES: list[ZooCase] = [
    # ---- text encoders -------------------------------------------------------------------
    _case("bert", "text-encoder", _text("BertModel", "BertConfig", **_ENC), T),
    _case("roberta", "text-encoder", _text("RobertaModel", "RobertaConfig", **_ENC,
                                           pad_token_id=1), T),
    _case("xlm-roberta", "text-encoder", _text("XLMRobertaModel", "XLMRobertaConfig", **_ENC,
                                               pad_token_id=1), T),
    _case("camembert", "text-encoder", _text("CamembertModel", "CamembertConfig", **_ENC,
                                             pad_token_id=1), T),
    _case("distilbert", "text-encoder", _text(
        "DistilBertModel", "DistilBertConfig", dim=64, n_layers=2, n_heads=4, hidden_dim=128,
        vocab_size=96, max_position_embeddings=128), T),
    _case("albert", "text-encoder", _text("AlbertModel", "AlbertConfig", **_ENC,
                                          embedding_size=32), T),
    _case("electra", "text-encoder", _text("ElectraModel", "ElectraConfig", **_ENC,
                                           embedding_size=32), T),
    _case("deberta-v2", "text-encoder", _text("DebertaV2Model", "DebertaV2Config", **_ENC), T),
    _case("mpnet", "text-encoder", _text("MPNetModel", "MPNetConfig", **_ENC), T),
    _case("ernie", "text-encoder", _text("ErnieModel", "ErnieConfig", **_ENC), T),
    _case("mobilebert", "text-encoder", _text(
        "MobileBertModel", "MobileBertConfig", hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, vocab_size=96, embedding_size=32,
        intra_bottleneck_size=32, true_hidden_size=32, max_position_embeddings=128), T),
    _case("squeezebert", "text-encoder", _text("SqueezeBertModel", "SqueezeBertConfig",
                                               **_ENC, embedding_size=64), T),
    _case("t5-encoder", "text-encoder", _text(
        "T5EncoderModel", "T5Config", d_model=64, d_kv=16, d_ff=128, num_layers=2,
        num_heads=4, vocab_size=96), T),
    _case("clip-text", "text-encoder", _text(
        "CLIPTextModel", "CLIPTextConfig", **_ENC, bos_token_id=0, eos_token_id=2), T),
    # ---- decoders ------------------------------------------------------------------------
    _case("gpt2", "decoder", _text("GPT2Model", "GPT2Config", n_embd=64, n_layer=2, n_head=4,
                                   vocab_size=96, n_positions=128, use_cache=False,
                                   bos_token_id=0, eos_token_id=0), T),
    _case("gpt-neo", "decoder", _text(
        "GPTNeoModel", "GPTNeoConfig", hidden_size=64, num_layers=2, num_heads=4,
        vocab_size=96, max_position_embeddings=128, attention_types=[[["global"], 2]],
        use_cache=False, bos_token_id=0, eos_token_id=0), T),
    _case("gptj", "decoder", _text("GPTJModel", "GPTJConfig", n_embd=64, n_layer=2, n_head=4,
                                   vocab_size=96, n_positions=128, rotary_dim=8,
                                   use_cache=False, bos_token_id=0, eos_token_id=0), T),
    _case("gpt-neox", "decoder", _text(
        "GPTNeoXModel", "GPTNeoXConfig", **_DEC, use_cache=False), T),
    _case("opt", "decoder", _text("OPTModel", "OPTConfig", hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, ffn_dim=128, vocab_size=96,
                                  max_position_embeddings=128, word_embed_proj_dim=64,
                                  use_cache=False), T),
    _case("bloom", "decoder", _text("BloomModel", "BloomConfig", hidden_size=64, n_layer=2,
                                    n_head=4, vocab_size=96, use_cache=False), T),
    _case("llama", "decoder", _text("LlamaModel", "LlamaConfig", **_LLAMA, use_cache=False), T),
    _case("mistral", "decoder", _text("MistralModel", "MistralConfig", **_LLAMA,
                                      use_cache=False), T),
    _case("qwen2", "decoder", _text("Qwen2Model", "Qwen2Config", **_LLAMA, use_cache=False), T),
    _case("phi", "decoder", _text("PhiModel", "PhiConfig", **_DEC, use_cache=False), T),
    _case("gemma", "decoder", _text("GemmaModel", "GemmaConfig", **_LLAMA, head_dim=16,
                                    use_cache=False), T),
    _case("falcon", "decoder", _text("FalconModel", "FalconConfig", hidden_size=64,
                                     num_hidden_layers=2, num_attention_heads=4,
                                     vocab_size=96, use_cache=False), T),
    _case("codegen", "decoder", _text("CodeGenModel", "CodeGenConfig", n_embd=64, n_layer=2,
                                      n_head=4, vocab_size=96, n_positions=128, rotary_dim=8,
                                      use_cache=False, bos_token_id=0, eos_token_id=0), T),
    _case("stablelm", "decoder", _text("StableLmModel", "StableLmConfig", **_LLAMA,
                                       use_cache=False), T),
    # ---- vision transformers ---------------------------------------------------------------
    _case("vit", "vision", _vision("ViTModel", "ViTConfig", **_VIT), _pixels(), False),
    _case("deit", "vision", _vision("DeiTModel", "DeiTConfig", **_VIT), _pixels(), False),
    _case("beit", "vision", _vision("BeitModel", "BeitConfig", **_VIT, vocab_size=96,
                                    use_relative_position_bias=True), _pixels(), False),
    _case("dinov2", "vision", _vision("Dinov2Model", "Dinov2Config", **_VIT, mlp_ratio=2),
          _pixels(), False),
    _case("clip-vision", "vision", _vision("CLIPVisionModel", "CLIPVisionConfig", **_VIT),
          _pixels(), False),
    _case("data2vec-vision", "vision", _vision("Data2VecVisionModel", "Data2VecVisionConfig",
                                               **_VIT), _pixels(), False),
    # ---- hierarchical vision ----------------------------------------------------------------
    _case("swin", "hierarchical-vision", _vision(
        "SwinModel", "SwinConfig", image_size=32, patch_size=2, embed_dim=16, depths=[1, 1],
        num_heads=[2, 4], window_size=4), _pixels(), False),
    _case("segformer", "hierarchical-vision", _vision(
        "SegformerModel", "SegformerConfig", num_encoder_blocks=2, depths=[1, 1],
        sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
        patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2]), _pixels(), False),
    _case("poolformer", "hierarchical-vision", _vision(
        "PoolFormerModel", "PoolFormerConfig", depths=[1, 1], hidden_sizes=[16, 32],
        num_encoder_blocks=2, patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1]),
        _pixels(), False),
    # ---- convolutional vision ---------------------------------------------------------------
    _case("resnet", "conv-vision", _vision("ResNetModel", "ResNetConfig", embedding_size=16,
                                           hidden_sizes=[16, 32], depths=[1, 1]),
          _pixels(), False),
    _case("convnext", "conv-vision", _vision("ConvNextModel", "ConvNextConfig",
                                             hidden_sizes=[16, 32], depths=[1, 1],
                                             num_stages=2), _pixels(), False),
    _case("regnet", "conv-vision", _vision("RegNetModel", "RegNetConfig", embedding_size=16,
                                           hidden_sizes=[16, 32], depths=[1, 1],
                                           groups_width=8), _pixels(), False),
    _case("mobilenet-v2", "conv-vision", _vision("MobileNetV2Model", "MobileNetV2Config",
                                                 depth_multiplier=0.25, image_size=32),
          _pixels(), False),
    _case("efficientnet", "conv-vision", _vision(
        "EfficientNetModel", "EfficientNetConfig", width_coefficient=0.25,
        depth_coefficient=0.25, image_size=32, hidden_dim=320), _pixels(), False),
    # ---- audio -------------------------------------------------------------------------------
    _case("wav2vec2", "audio", _audio("Wav2Vec2Model", "Wav2Vec2Config", **_WAV), _waveform),
    _case("hubert", "audio", _audio("HubertModel", "HubertConfig", **_WAV), _waveform),
    _case("wavlm", "audio", _audio("WavLMModel", "WavLMConfig", **_WAV, num_buckets=32),
          _waveform),
    _case("data2vec-audio", "audio", _audio("Data2VecAudioModel", "Data2VecAudioConfig",
                                            **{**_WAV, "num_conv_pos_embeddings": 4}),
          _waveform),
]
"""Every zoo architecture."""


def get(name: str) -> ZooCase:
    """The zoo case called ``name``."""
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(f"no zoo case {name!r}; choose from {', '.join(c.name for c in CASES)}")


def dynamic_spec(case: ZooCase, inputs: Inputs) -> tuple[dict[int, Any], ...]:
    """Dim 0 of every input, and dim 1 for text and raw audio (``torch.export.Dim.AUTO``)."""
    from torch.export import Dim

    return tuple({0: Dim.AUTO, **({1: Dim.AUTO} if case.dynamic_length and t.dim() > 1
                                  else {})} for t in inputs)


# ---- checking one case on one path ---------------------------------------------------------
PATHS = ("accel.compile", "torch.compile", "onnx", "peer")
"""``accel.compile`` (the ``cpu`` target), ``torch.compile(backend="accel")`` with the
dynamic dims marked (``torch._dynamo.mark_dynamic``) before its first call,
``accel.export_onnx`` run in onnxruntime, and the peer: ``torch.onnx.export(dynamo=True)``
with the same dynamic shapes, run in onnxruntime."""
TOLERANCE = 1e-3
"""Largest |output - eager| relative to max |eager| counted as exact."""


@dataclass
class Outcome:
    """What one path did with one case."""

    ok: bool
    detail: str = ""
    fallbacks: int = 0
    """aten fallback nodes (accel.compile path)."""
    recompilations: int = 0


def _error(out: torch.Tensor, ref: torch.Tensor) -> float:
    scale = max(float(ref.abs().max()), 1.0)
    return float((out.float() - ref.float()).abs().max()) / scale


def check(case: ZooCase, path: str) -> Outcome:
    """Compile ``case`` once at its first shape with dynamic dims, run the three others."""
    import warnings

    torch.manual_seed(0)
    model = case.build().eval()
    first, *calls = case.shapes
    example = case.inputs(*first)
    spec = dynamic_spec(case, example)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run, extra = _prepare(path, model, example, spec)
            worst = 0.0
            for b, s in calls:
                args = case.inputs(b, s)
                with torch.no_grad():
                    ref = model(*args)
                    out = run(args)
                if tuple(out.shape) != tuple(ref.shape):
                    return Outcome(False, f"shape {tuple(out.shape)} != eager "
                                          f"{tuple(ref.shape)} at {b}x{s}", **extra())
                worst = max(worst, _error(out, ref))
            facts = extra()
    except Exception as e:  # noqa: BLE001 - recorded in the table
        return Outcome(False, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
    return Outcome(worst <= TOLERANCE, f"max rel. error {worst:.1e}", **facts)


def _prepare(path: str, model: torch.nn.Module, example: Inputs, spec: Any
             ) -> tuple[Callable[[Inputs], torch.Tensor], Callable[[], dict]]:
    import accel

    if path == "accel.compile":
        compiled = accel.compile(model, example, target="cpu", dynamic_shapes=spec)
        return (lambda args: compiled(*args),
                lambda: {"fallbacks": len(compiled.report.fallbacks),
                         "recompilations": compiled.report.recompilations})
    if path == "torch.compile":
        torch._dynamo.reset()
        start = len(accel.reports())
        compiled = torch.compile(model, backend="accel", options={"target": "cpu"})
        marked = tuple(t.clone() for t in example)
        for t, axes in zip(marked, spec, strict=True):
            for axis in axes:
                torch._dynamo.mark_dynamic(t, axis)
        with torch.no_grad():
            compiled(*marked)  # the one compile: Dynamo traces the marked dims symbolic

        def extra() -> dict:
            reports = accel.reports()[start:]
            broken = [f for r in reports for f in r.eager_fallbacks]
            if broken:
                raise RuntimeError(f"ran eagerly: {broken[0]}")
            return {"fallbacks": sum(len(r.fallbacks) for r in reports),
                    "recompilations": sum(r.recompilations for r in reports)}
        return (lambda args: compiled(*args)), extra
    if path in ("onnx", "peer"):
        import tempfile

        import onnxruntime as ort

        d = tempfile.mkdtemp(prefix="accel-zoo-")
        if path == "onnx":
            file = accel.export_onnx(model, example, f"{d}/m.onnx", dynamic_shapes=spec)
        else:
            file = f"{d}/m.onnx"
            # FirstOutput.forward(*tensors): torch.export wants the spec of the one *args
            torch.onnx.export(model, example, file, dynamo=True, dynamic_shapes=(spec,),
                              external_data=False)
        sess = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]

        def run(args: Inputs) -> torch.Tensor:
            feeds = {n: a.numpy() for n, a in zip(names, args, strict=False)}
            return torch.from_numpy(sess.run(None, feeds)[0])
        return run, lambda: {}
    raise KeyError(path)
