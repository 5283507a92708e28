"""repavit: the idle channels of a RePaViT MLP collapse into one linear (exact)."""

import torch
from torch import nn

from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass


def test_repavit_builtin_vit_prenorm():
    model, inputs = get_model("vit_small_test", depth=2, ffn_idle_ratio=0.75)
    result = check_pass(model, inputs, "repavit", setup="fold-scale", atol=1e-5)
    print("vit_small_test ffn_idle_ratio=0.75 repavit:", result.summary())
    changes = result.op_changes()
    assert changes["slice"] == (4, 0) and changes["concat"] == (3, 1)  # patch concat stays
    # fc1/fc2 (2 per block) become lin + act1 + act2 (3 per block); the pre-norm residual
    # add stays and the two paths add: +1 add per block.
    assert changes["linear"] == (9, 11) and changes["add"] == (5, 7)
    mlp_flops_before = 2 * 17 * (64 * 256 + 256 * 64)
    mlp_flops_after = 2 * 17 * (64 * 64 + 64 * 64 + 64 * 64)
    saved = 2 * (mlp_flops_before - mlp_flops_after)  # 8D² -> 3D² multiply-adds per token

    def linear_flops(graph):
        return sum(n.flops() for n in graph.find("linear"))

    assert linear_flops(result.before) - linear_flops(result.after) == saved
    assert result.after.flops() < 0.7 * result.before.flops()


class PostResidualMlp(nn.Module):
    """x + fc2(cat(gelu(h[..., :a]), h[..., a:])), h = fc1(x): the residual folds into W_lin."""

    def __init__(self, dim=16, hidden=64, n_active=16):
        super().__init__()
        self.fc1, self.fc2, self.n_active = nn.Linear(dim, hidden), nn.Linear(hidden, dim), n_active

    def forward(self, x):
        h = self.fc1(x)
        a = self.n_active
        return x + self.fc2(torch.cat([nn.functional.gelu(h[..., :a]), h[..., a:]], dim=-1))


def test_residual_folds_into_identity_when_fc1_reads_the_residual():
    torch.manual_seed(0)
    result = check_pass(PostResidualMlp().eval(), (torch.randn(2, 5, 16),), "repavit", atol=1e-5)
    print("post-residual RePaViT MLP:", result.summary())
    # the residual add is absorbed (I in W_lin); only the add of the two paths is left
    assert result.after.op_counts() == {"linear": 3, "gelu": 1, "add": 1}


def test_not_cheaper_is_left_alone():
    # 4 idle channels of 64: D*D + 60*(2D) > 64*(2D) multiply-adds, so nothing changes.
    model = PostResidualMlp(n_active=60).eval()
    graph = capture(model, (torch.randn(2, 5, 16),))
    assert get_pass("repavit").fn(graph, PassContext()) is graph


def test_plain_mlp_is_left_alone():
    model, inputs = get_model("vit_small_test", depth=1)
    graph = capture(model, inputs)
    assert get_pass("repavit").fn(graph, PassContext()) is graph
