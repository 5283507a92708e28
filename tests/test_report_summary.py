"""No silent fallback: ``Report.summary()`` says when an aten fallback, a graph break, a
skipped pass or a recompilation happened, and says nothing went wrong otherwise."""

from __future__ import annotations

import torch

import accel
from accel.ir.graph import Graph
from accel.passes import PassContext, register_pass
from accel.passes import registry as pass_registry


def _mlp() -> tuple[torch.nn.Module, torch.Tensor]:
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()).eval(), torch.randn(2, 4)


def test_clean_compile_says_everything_compiled() -> None:
    model, x = _mlp()
    summary = accel.compile(model, (x,), pipeline="cleanup").report.summary()
    assert "every node compiled" in summary


def test_summary_names_aten_fallbacks() -> None:
    class Bessel(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.bessel_j0(x) + 1

    x = torch.randn(3)
    compiled = accel.compile(Bessel(), (x,))
    assert any("bessel_j0" in f for f in compiled.report.fallbacks)
    assert "1 aten fallback(s)" in compiled.report.summary()
    assert "fallback: " in str(compiled.report)
    torch.testing.assert_close(compiled(x), Bessel()(x))


def test_summary_names_skipped_passes() -> None:
    def never_applies(graph: Graph, ctx: PassContext) -> Graph:
        """Declares it has nothing to do."""
        ctx.skip("no pattern found (test pass)")
        return graph

    register_pass("test-never-applies")(never_applies)
    try:
        model, x = _mlp()
        report = accel.compile(model, (x,), pipeline="cse,test-never-applies").report
    finally:
        pass_registry._PASSES.pop("test-never-applies", None)  # noqa: SLF001 - test-only
    assert report.skipped == ["test-never-applies"]
    assert "1 pass(es) skipped (test-never-applies)" in report.summary()


def test_summary_counts_recompilations() -> None:
    model, x = _mlp()
    compiled = accel.compile(model, (x,))
    with torch.no_grad():
        compiled(torch.randn(5, 4))  # new batch size: a specialization with a symbolic batch
        compiled(torch.randn(5, 4))  # cached
        compiled(torch.randn(7, 4))  # served by the symbolic one
        compiled(torch.randn(1, 4))  # size 1: torch keeps it out of symbolic ranges
    assert compiled.report.recompilations == 2
    assert "2 recompilation(s)" in compiled.report.summary()


def test_summary_counts_dynamo_graph_breaks() -> None:
    class Breaks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.a(x))
            torch._dynamo.graph_break()
            return self.b(y)

    torch._dynamo.reset()
    model, x = Breaks().eval(), torch.randn(2, 4)
    first = len(accel.reports())
    compiled = torch.compile(model, backend="accel")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
    reports = accel.reports()[first:]
    assert len(reports) == 2  # one graph on each side of the break
    assert sum(r.graph_breaks for r in reports) == 1
    assert any("1 graph break(s)" in r.summary() for r in reports)
