"""fold-linear: back-to-back linears merge only when the product is cheaper."""

import torch
from torch import nn

from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass


def test_wide_bottleneck_merges():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 6)).eval()  # 8*6 < 64*(8+6)
    result = check_pass(model, (torch.randn(5, 8),), "fold-linear", atol=1e-5)
    print("8->64->6:", result.summary())
    assert result.op_changes() == {"linear": (2, 1)}
    assert result.after.flops() < result.before.flops()


def test_low_rank_factorization_is_kept():
    model = nn.Sequential(nn.Linear(64, 4), nn.Linear(4, 64)).eval()  # 64*64 > 4*(64+64)
    graph = capture(model, (torch.randn(5, 64),))
    assert get_pass("fold-linear").fn(graph, PassContext()) is graph


def test_nonlinearity_between_blocks_merge():
    model = nn.Sequential(nn.Linear(8, 64), nn.GELU(), nn.Linear(64, 6)).eval()
    graph = capture(model, (torch.randn(5, 8),))
    assert get_pass("fold-linear").fn(graph, PassContext()) is graph


def test_head_projection_on_vit():
    # A ViT whose classifier is a linear projection followed by a linear head (no
    # activation between): the real-architecture numerics check.
    model, inputs = get_model("vit_small_test", depth=1)
    model.head = nn.Sequential(nn.Linear(64, 256), nn.Linear(256, 10))
    result = check_pass(model.eval(), inputs, "fold-linear", atol=1e-5)
    print("vit_small_test + 2-linear head:", result.summary())
    assert result.op_changes() == {"linear": (6, 5)}
