"""merge-branches: summed parallel branches on one input become one conv (RepVGG, MobileOne)."""

import pytest
import torch
from torch import nn

from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass


@pytest.mark.parametrize("name,blocks", [("repvgg_small_test", 7), ("mobileone_small_test", 11)])
def test_merge_branches_builtin_models(name, blocks):
    model, inputs = get_model(name)
    result = check_pass(model, inputs, "merge-branches", setup="fold-bn", atol=1e-5)
    print(f"{name} fold-bn,merge-branches:", result.summary())
    after = result.after.op_counts()
    assert after["conv"] == blocks  # one conv per block
    assert "add" not in after and "batch_norm" not in after


class Branches(nn.Module):
    """conv3x3 + conv1x1 (+ optional identity, identity-BN, avg-pool) on the same input."""

    def __init__(self, c=4, stride1=1, groups1=1, pad1=0, extra=()):
        super().__init__()
        self.k3 = nn.Conv2d(c, c, 3, 1, 1)
        self.k1 = nn.Conv2d(c, c, 1, stride1, pad1, groups=groups1)
        self.bn = nn.BatchNorm2d(c)
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.extra = extra

    def forward(self, x):
        out = self.k3(x) + self.k1(x)
        if "identity" in self.extra:
            out = out + x
        if "bn" in self.extra:
            out = out + self.bn(x)
        if "pool" in self.extra:
            out = out + self.pool(x)
        return out


def test_identity_bn_and_avgpool_branches_merge():
    torch.manual_seed(0)
    model = Branches(extra=("identity", "bn", "pool")).eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2)
    result = check_pass(model, (torch.randn(2, 4, 8, 8),), "merge-branches", atol=1e-5)
    print("3x3+1x1+identity+BN+avgpool:", result.summary())
    assert result.after.op_counts() == {"conv": 1}


class TwoConvs(nn.Module):
    """Two parallel convs on one input, summed."""

    def __init__(self, a: nn.Conv2d, b: nn.Conv2d) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return self.a(x) + self.b(x)


@pytest.mark.parametrize("a,b,size", [
    (nn.Conv2d(4, 4, 3, 2, 1), nn.Conv2d(4, 4, 1, 3, 1), 8),   # strides 2 vs 3, both 4x4 out
    (nn.Conv2d(4, 4, 3, 1, 1), nn.Conv2d(4, 4, 1, 1, 0, groups=2), 8),  # groups 1 vs 2
    (nn.Conv2d(4, 4, 3, 3, 0), nn.Conv2d(4, 4, 1, 3, 0), 9),   # 1x1 not centred: 3x3 out both
], ids=["stride", "groups", "padding"])
def test_misaligned_branches_are_left_alone(a, b, size):
    model, x = TwoConvs(a, b).eval(), torch.randn(1, 4, size, size)
    graph = capture(model, (x,))
    assert get_pass("merge-branches").fn(graph, PassContext()) is graph


def test_different_strides_do_not_merge():
    class TwoStrides(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, 2, 1)   # 8x8 -> 4x4
            self.b = nn.Conv2d(4, 4, 1, 2, 0)   # 8x8 -> 4x4, aligned: merges
            self.c = nn.Conv2d(4, 4, 3, 1, 1)   # stride 1, pooled after: must not merge

        def forward(self, x):
            return self.a(x) + self.b(x) + nn.functional.max_pool2d(self.c(x), 2)

    torch.manual_seed(0)
    result = check_pass(TwoStrides().eval(), (torch.randn(1, 4, 8, 8),), "merge-branches")
    print("two strides:", result.summary())
    assert result.op_changes() == {"conv": (3, 2), "add": (2, 1)}


@pytest.mark.slow
@pytest.mark.parametrize("name,blocks", [("repvgg_a0", 22), ("mobileone_s0", 43)])
def test_default_pipeline_full_size_models(name, blocks):
    model, inputs = get_model(name)
    result = check_pass(model, inputs, "default", rtol=1e-5)
    print(f"{name} default:", result.summary(), f"(max rel error {result.max_rel_error:.3g})")
    assert result.after.op_counts()["conv"] == blocks
    assert result.max_rel_error < 1e-5
