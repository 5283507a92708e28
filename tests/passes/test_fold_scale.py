"""fold-scale: LayerScale gammas and constant input scales fold into linear/conv weights."""

import torch
from torch import nn

from accel.frontend import capture
from accel.models import get_model
from accel.passes import PassContext
from accel.passes.registry import get_pass
from accel.testing import check_pass


def test_fold_layer_scale_builtin_vit():
    model, inputs = get_model("vit_small_test", depth=2, layer_scale=0.1)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.normal_(0.0, 1.0)
    result = check_pass(model, inputs, "fold-scale", atol=1e-5)
    print("vit_small_test layer_scale fold-scale:", result.summary())
    assert result.op_changes() == {"mul": (4, 0)}


class Scaled(nn.Module):
    """linear(x * s) then conv-like per-channel scale on the output."""

    def __init__(self, s_shape=(8,)):
        super().__init__()
        self.fc = nn.Linear(8, 5)
        self.s = nn.Parameter(torch.rand(s_shape) + 0.5)
        self.g = nn.Parameter(torch.randn(5))

    def forward(self, x):
        return self.fc(x * self.s) / self.g


def test_fold_input_and_output_scale():
    torch.manual_seed(0)
    result = check_pass(Scaled().eval(), (torch.randn(3, 4, 8),), "fold-scale", atol=1e-5)
    print("input scale + output div:", result.summary())
    assert result.op_changes() == {"div": (1, 0), "mul": (1, 0)}


def test_conv_channel_scale():
    class ConvScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.g = nn.Parameter(torch.randn(4, 1, 1))

        def forward(self, x):
            return self.conv(x) * self.g

    torch.manual_seed(0)
    result = check_pass(ConvScale().eval(), (torch.randn(1, 3, 8, 8),), "fold-scale", atol=1e-5)
    print("conv channel scale:", result.summary())
    assert result.op_changes() == {"mul": (1, 0)}


def test_scale_along_tokens_is_left_alone():
    # s varies along the token dim (shape [4, 1]), not along the features: cannot fold.
    torch.manual_seed(0)
    model = Scaled(s_shape=(4, 1))
    model.g = nn.Parameter(torch.randn(4, 1))
    graph = capture(model.eval(), (torch.randn(3, 4, 8),))
    assert get_pass("fold-scale").fn(graph, PassContext()) is graph
