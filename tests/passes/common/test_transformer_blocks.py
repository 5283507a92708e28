"""Structural transformer-block discovery on built-in and Hugging Face ViT graphs."""

from __future__ import annotations

import torch

from accel.frontend import capture
from accel.models import get_model
from accel.passes.common.transformer_blocks import count_prefix_tokens, find_blocks


def test_builtin_vit_blocks_and_class_token() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    blocks = find_blocks(graph)
    assert [b.index for b in blocks] == [0, 1]
    assert all(b.attention.op == "attention" and b.attn_residual.op == "add" for b in blocks)
    assert count_prefix_tokens(graph, blocks) == 1


def test_distilled_vit_has_two_prefix_tokens() -> None:
    model, x = get_model("vit_small_test", batch_size=1, distilled=True, depth=1)
    graph = capture(model, x)
    blocks = find_blocks(graph)
    assert len(blocks) == 1 and count_prefix_tokens(graph, blocks) == 2


def test_hf_vit_and_deit_blocks() -> None:
    from transformers import (
        DeiTConfig,
        DeiTForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )

    kw = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
              num_attention_heads=2, intermediate_size=64, num_labels=3)
    x = torch.randn(1, 3, 32, 32)
    for cls, cfg, prefix in ((ViTForImageClassification, ViTConfig(**kw), 1),
                             (DeiTForImageClassification, DeiTConfig(**kw), 2)):
        model = cls(cfg).eval()
        graph = capture(model, (x,))
        blocks = find_blocks(graph)
        assert len(blocks) == 2, cls.__name__
        assert count_prefix_tokens(graph, blocks) == prefix, cls.__name__


def test_convnet_has_no_blocks() -> None:
    model, x = get_model("resnet_small_test", batch_size=1)
    assert find_blocks(capture(model, x)) == []
