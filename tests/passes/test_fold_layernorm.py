"""fold-layernorm: a LayerNorm's affine folds into the linears that are its only users."""

import torch
import transformers

from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass


def _randomize_layernorms(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.5)
                m.bias.normal_(0.0, 0.5)
    return model


def _affine_count(graph):
    return sum(len(n.inputs) > 1 for n in graph.find("layer_norm"))


def test_fold_layernorm_hf_vit():
    cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=128, image_size=32, patch_size=8)
    model = _randomize_layernorms(transformers.ViTModel(cfg).eval())
    result = check_pass(model, (torch.randn(2, 3, 32, 32),), "fold-layernorm", atol=1e-4)
    print("HF ViT fold-layernorm:", result.summary())
    # layernorm_before (q, k, v) and layernorm_after (intermediate) of 2 layers fold; the
    # final LayerNorm feeds the output and the pooler's select, so it keeps its affine.
    assert _affine_count(result.before) == 5 and _affine_count(result.after) == 1


def test_fold_layernorm_builtin_vit():
    model, inputs = get_model("vit_small_test", depth=2)
    result = check_pass(_randomize_layernorms(model), inputs, "fold-layernorm", atol=1e-4)
    print("vit_small_test fold-layernorm:", result.summary())
    assert _affine_count(result.after) == 1


def test_layernorm_feeding_residual_is_left_alone():
    # In post-norm BERT every LayerNorm also feeds a residual add: nothing may fold.
    model, inputs = get_model("bert_small_test")
    graph = capture(model, inputs)
    assert get_pass("fold-layernorm").fn(graph, PassContext()) is graph
