"""fold-bn: conv/linear -> eval BN becomes one conv/linear; training-mode BN is never folded."""

import pytest
import torch
from torch import nn

from accel.errors import CaptureError
from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass


def _run(graph):
    return get_pass("fold-bn").fn(graph, PassContext())


def test_fold_bn_repvgg_counts_and_numerics():
    model, inputs = get_model("repvgg_small_test")
    result = check_pass(model, inputs, "fold-bn", atol=1e-5)
    print("repvgg_small_test fold-bn:", result.summary())
    # 16 BNs: 14 follow a conv, 2 are identity-BN branches (no conv to fold into).
    assert result.op_changes() == {"batch_norm": (16, 2)}
    assert result.after.op_counts()["conv"] == 14


def test_fold_bn_mobileone_depthwise():
    model, inputs = get_model("mobileone_small_test")
    result = check_pass(model, inputs, "fold-bn", atol=1e-5)
    print("mobileone_small_test fold-bn:", result.summary())
    assert result.op_changes()["batch_norm"][1] < result.op_changes()["batch_norm"][0]


def test_fold_bn_linear_bn1d():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6)).eval()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.normal_()
    result = check_pass(model, (torch.randn(4, 8),), "fold-bn", atol=1e-5)
    print("linear+bn1d:", result.summary())
    assert result.op_changes() == {"batch_norm": (1, 0)}


def test_training_mode_bn_is_refused_with_the_fix():
    # A training-mode BN updates its running statistics in place; a functional inference graph
    # would drop that update, so capture refuses and names the fix instead of folding.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with pytest.raises(CaptureError, match=r"(?s)running_mean.*model\.eval\(\)"):
        capture(model, (torch.randn(2, 3, 8, 8),))


def test_shared_conv_output_is_not_folded():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    graph = capture(Shared().eval(), (torch.randn(1, 3, 8, 8),))
    assert _run(graph) is graph
