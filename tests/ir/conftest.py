"""Small hand-built graphs shared by the IR tests."""

from __future__ import annotations

import pytest
import torch

from accel.ir.graph import Graph, Rewriter
from accel.ir.types import TensorType


def build_mlp() -> Graph:
    """x[2,8] -> linear(4) -> relu -> mul(2.0) -> output; plus a dead exp node."""
    rw = Rewriter()
    x = rw.add_input("x", TensorType((2, 8), torch.float32))
    w = rw.const(torch.randn(4, 8), "fc_weight")
    b = rw.const(torch.randn(4), "fc_bias")
    h = rw.op("linear", x, w, b, name="fc")
    r = rw.op("relu", h, name="act")
    rw.op("exp", r, name="dead")
    two = rw.const(torch.tensor(2.0), "two")
    y = rw.op("mul", r, two, name="scale")
    rw.set_outputs([y])
    return rw.finish("mlp")


@pytest.fixture
def mlp() -> Graph:
    return build_mlp()
