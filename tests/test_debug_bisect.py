"""accel.debug.bisect and ``accel bisect``: a deliberately broken pass is found and shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from accel.cli import main
from accel.debug import bisect
from accel.ir.graph import Graph
from accel.models import get_model
from accel.passes import PassContext, register_pass
from accel.passes import registry as pass_registry

BROKEN = "test-broken-gelu-to-relu"


def _gelu_to_relu(graph: Graph, ctx: PassContext) -> Graph:
    """Wrong on purpose: replaces every gelu by relu."""
    rw = graph.rewriter()
    for n in graph.find("gelu"):
        rw.replace(n.output, rw.op("relu", n.inputs[0], name="wrong_relu"))
    return rw.finish() if graph.find("gelu") else graph


@pytest.fixture
def broken_pass() -> Iterator[str]:
    """Register the broken pass for one test only."""
    register_pass(BROKEN)(_gelu_to_relu)
    try:
        yield BROKEN
    finally:
        pass_registry._PASSES.pop(BROKEN, None)  # noqa: SLF001 - test-only unregistration


def test_bisect_names_the_broken_pass(broken_pass: str) -> None:
    model, inputs = get_model("vit_small_test", batch_size=1)
    result = bisect(model, inputs, f"remove-noops,{broken_pass},cse,dce", atol=1e-4)
    assert result.found
    assert result.pass_name == broken_pass
    assert result.index == 1
    assert result.error > result.allowed
    assert [name for name, _ in result.step_errors] == ["capture", "remove-noops", broken_pass]
    # minimal subgraphs: the before side computes through a gelu, the after side a relu,
    # and both are a handful of nodes, not the whole model
    assert "ops.gelu(" in result.before and "ops.gelu(" not in result.after
    assert "ops.relu(" in result.after
    for text in (result.before, result.after):
        nodes = [ln for ln in text.splitlines() if " = ops." in ln]
        assert 1 <= len(nodes) <= 4, text
    assert result.diverging_value is not None
    assert result.subgraph_error is not None and result.subgraph_error > 1e-3
    assert broken_pass in str(result)


def test_bisect_clean_pipeline_finds_nothing() -> None:
    model, inputs = get_model("vit_small_test", batch_size=1)
    result = bisect(model, inputs, "default")
    assert not result.found
    assert result.error <= result.allowed
    assert len(result.step_errors) == 1 + len(result.step_errors[1:])
    assert "every pass keeps numerics" in str(result)


def test_bisect_reports_first_of_two_breaking_passes(broken_pass: str) -> None:
    """Only the first breaking pass is named; later ones do not run."""

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.gelu(self.fc(x)) * 2

    result = bisect(Tiny().eval(), (torch.randn(2, 8),), f"cse,{broken_pass},{broken_pass}")
    assert (result.pass_name, result.index) == (broken_pass, 1)
    assert len(result.step_errors) == 3


def test_bisect_cli(broken_pass: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bisect", "vit_small_test", "--pipeline", f"cse,{broken_pass}",
                 "--batch-size", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"pass '{broken_pass}' (step 1) breaks numerics" in out
    assert "# ---- before ----" in out and "# ---- after ----" in out
