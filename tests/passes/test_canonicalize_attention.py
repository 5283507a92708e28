"""canonicalize-attention: eager matmul/softmax/matmul attention becomes one attention op."""

import pytest
import torch
import transformers
from torch import nn

from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


def test_hf_bert_eager_with_padding_mask():
    cfg = transformers.BertConfig(**SMALL, vocab_size=100, max_position_embeddings=32,
                                  attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    result = check_pass(model, (ids, mask), "canonicalize-attention", atol=1e-5)
    print("HF BertModel eager:", result.summary())
    changes = result.op_changes()
    assert changes["softmax"] == (2, 0) and changes["matmul"] == (4, 0)
    assert changes["attention"] == (0, 2)
    assert all(len(n.inputs) == 4 for n in result.after.find("attention"))  # mask kept


def test_hf_vit_eager():
    cfg = transformers.ViTConfig(**SMALL, image_size=32, patch_size=8,
                                 attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.ViTModel(cfg).eval()
    result = check_pass(model, (torch.randn(1, 3, 32, 32),), "canonicalize-attention",
                        atol=1e-5)
    print("HF ViTModel eager:", result.summary())
    assert result.op_changes()["attention"] == (0, 2)
    assert "softmax" not in result.after.op_counts()


def test_builtin_bert_div_scale():
    model, inputs = get_model("bert_small_test")
    result = check_pass(model, inputs, "canonicalize-attention", atol=1e-5)
    print("bert_small_test:", result.summary())
    assert result.op_changes()["attention"] == (0, 2)
    scales = [n.attrs["scale"] for n in result.after.find("attention")]
    assert scales == pytest.approx([32 ** -0.5] * 2)


class RawAttention(nn.Module):
    """softmax(q @ kt * 0.5, dim) @ v where kt arrives already transposed (no permute)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, q, kt, v):
        return torch.softmax(q @ kt * 0.5, dim=self.dim) @ v


def test_pre_transposed_key_gets_a_permute():
    q, kt, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 4, 6), torch.randn(2, 3, 6, 4)
    result = check_pass(RawAttention(), (q, kt, v), "canonicalize-attention", atol=1e-5)
    print("pre-transposed k:", result.summary())
    assert result.after.op_counts() == {"permute": 1, "attention": 1}
    assert result.after.find("attention")[0].attrs["scale"] == 0.5


def test_softmax_over_queries_is_left_alone():
    q, kt, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 4, 5), torch.randn(2, 3, 5, 4)
    graph = capture(RawAttention(dim=-2), (q, kt, v))
    assert get_pass("canonicalize-attention").fn(graph, PassContext()) is graph
