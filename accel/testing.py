"""Test helpers for pass authors: check that a pass preserves numerics on a model and show
the graph before and after.

    from accel.testing import check_pass
    result = check_pass(model, (x,), "my-pass{factor=2}")
    assert result.changed and result.max_abs_error < 1e-5
    print(result.diff())
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

from accel.backends.aten import AtenExecutor
from accel.frontend import capture
from accel.ir.graph import Graph
from accel.passes import PassContext, parse_pipeline, run_pipeline
from accel.report import PassRecord


@dataclass
class PassCheck:
    """What :func:`check_pass` found."""

    before: Graph
    """Graph after capture (and after ``setup`` passes)."""
    after: Graph
    """Graph after the pass under test."""
    max_abs_error: float
    """Largest |before - after| over every output element."""
    max_rel_error: float
    """``max_abs_error`` relative to the largest |before| element."""
    records: list[PassRecord] = field(default_factory=list)
    """Report rows of the passes under test."""

    @property
    def changed(self) -> bool:
        """Whether the pass changed the graph."""
        return any(r.changed for r in self.records)

    def op_changes(self) -> dict[str, tuple[int, int]]:
        """``{op: (count before, count after)}`` for every op whose count changed."""
        b, a = self.before.op_counts(), self.after.op_counts()
        return {op: (b.get(op, 0), a.get(op, 0)) for op in sorted(set(b) | set(a))
                if b.get(op, 0) != a.get(op, 0)}

    def summary(self) -> str:
        """One line: op-count changes, FLOPs before/after and the max abs error."""
        ops = ", ".join(f"{op} {n0}->{n1}" for op, (n0, n1) in self.op_changes().items())
        return (f"{ops or 'no op-count change'}; FLOPs {self.before.flops():,} -> "
                f"{self.after.flops():,}; max abs error {self.max_abs_error:.3g}")

    def diff(self) -> str:
        """A unified diff of the printed graphs."""
        return "".join(difflib.unified_diff(self.before.python().splitlines(True),
                                            self.after.python().splitlines(True),
                                            "before", "after"))


def run_graph(graph: Graph, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Run a graph with the reference executor."""
    with torch.no_grad():
        return AtenExecutor(graph).run(inputs)


def max_errors(ref: Any, out: Any) -> tuple[float, float]:
    """Largest absolute and relative differences between two output structures."""
    ra, _ = tree_flatten(ref)
    oa, _ = tree_flatten(out)
    ra = [t for t in ra if isinstance(t, torch.Tensor)]
    oa = [t for t in oa if isinstance(t, torch.Tensor)]
    if len(ra) != len(oa):
        raise AssertionError(f"output count differs: {len(ra)} vs {len(oa)}")
    abs_err, scale = 0.0, 0.0
    for r, o in zip(ra, oa, strict=True):
        if r.shape != o.shape:
            raise AssertionError(f"output shape differs: {tuple(r.shape)} vs {tuple(o.shape)}")
        if r.numel() == 0:
            continue
        r64, o64 = r.detach().double().cpu(), o.detach().double().cpu()
        abs_err = max(abs_err, (r64 - o64).abs().max().item())
        scale = max(scale, r64.abs().max().item())
    return abs_err, abs_err / max(scale, 1e-12)


def check_pass(
    model: Any,
    example_inputs: tuple[torch.Tensor, ...],
    pipeline: str,
    *,
    setup: str = "none",
    atol: float | None = 1e-4,
    rtol: float = 1e-4,
    calibration: list | None = None,
) -> PassCheck:
    """Capture ``model``, run ``setup`` then ``pipeline``, and compare outputs before/after.

    Raises ``AssertionError`` (with the graph diff) when the error exceeds
    ``atol + rtol * max|before|``; pass ``atol=None`` to only measure (lossy passes).
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    ctx = PassContext(example_inputs=tuple(example_inputs), calibration=calibration, debug=True)
    graph = capture(model, example_inputs)
    graph.verify()
    before, _ = run_pipeline(graph, parse_pipeline(setup), ctx)
    after, records = run_pipeline(before, parse_pipeline(pipeline), ctx)
    ref = run_graph(before, tuple(example_inputs))
    out = run_graph(after, tuple(example_inputs))
    abs_err, rel_err = max_errors(ref, out)
    result = PassCheck(before, after, abs_err, rel_err, records)
    if atol is not None:
        scale = max((t.abs().max().item() for t in ref if t.numel()), default=0.0)
        if abs_err > atol + rtol * scale:
            raise AssertionError(f"pipeline {pipeline!r} changed the outputs by {abs_err:.3g} "
                                 f"(allowed {atol + rtol * scale:.3g})\n{result.diff()}")
    return result


def assert_matches_eager(compiled: Any, model: Any, inputs: tuple, atol: float = 1e-4,
                         rtol: float = 1e-4) -> float:
    """Assert a compiled model matches eager on ``inputs``; returns the max abs error."""
    with torch.no_grad():
        ref = model(*inputs)
        out = compiled(*inputs)
    abs_err, _ = max_errors(ref, out)
    ra, _ = tree_flatten(ref)
    scale = max((t.abs().max().item() for t in ra if isinstance(t, torch.Tensor) and t.numel()),
                default=0.0)
    assert abs_err <= atol + rtol * scale, f"max |eager - compiled| = {abs_err:.3g}"
    return abs_err
