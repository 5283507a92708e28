"""Debugging numerics: find the pass that breaks a model, and the smallest graphs that show it.

    result = accel.debug.bisect(model, (x,), "default,fold-bn", atol=1e-4)
    print(result)            # the pass, its error against eager, before/after subgraphs

or, on a built-in model, ``accel bisect vit_small_test --pipeline default,fold-bn``.

The pipeline runs pass by pass; after each pass the graph runs on the reference executor
and is compared with eager. At the first pass that exceeds the tolerance, the graphs before
and after it are run with every intermediate value recorded. Values present in both (same
name, same type) are compared in graph order; the first one that diverges is explained by
the smallest subgraphs that compute it from values that still agree, one per side.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

from accel.backends.aten import AtenExecutor
from accel.calibration import rebatch
from accel.cli import command
from accel.driver import check_calibration
from accel.errors import GraphError
from accel.frontend import as_module, capture, check_example_inputs
from accel.ir.graph import Graph, Rewriter, Value
from accel.passes import PassContext, format_pipeline, parse_pipeline, run_pipeline
from accel.runtime.compiled import Specialization
from accel.testing import max_errors


@dataclass
class BisectResult:
    """What :func:`bisect` found."""

    pass_name: str | None
    """The first pass that breaks numerics (``"capture"`` if the captured graph already
    differs from eager); ``None`` when every pass keeps the outputs within tolerance."""
    index: int | None
    """Its position in the expanded pipeline (0-based; -1 for capture)."""
    error: float
    """Max |eager - graph| over the outputs after that pass (after the last pass if none)."""
    allowed: float
    """The tolerance it was held to: ``atol + rtol * max|eager|``."""
    before: str = ""
    """Smallest printed graph (``graph.python()``) before the pass that shows the change."""
    after: str = ""
    """The matching printed graph after the pass."""
    diverging_value: str | None = None
    """Name of the first value (in both graphs) whose contents differ."""
    subgraph_error: float | None = None
    """Max |before - after| of the subgraphs' output on the recorded frontier values."""
    step_errors: list[tuple[str, float]] = field(default_factory=list)
    """(pass, max abs error vs eager) for each pass run, in order."""

    @property
    def found(self) -> bool:
        """Whether a pass breaking numerics was found."""
        return self.pass_name is not None

    def __str__(self) -> str:
        lines = [f"{name:<28} max|eager - graph| = {err:.3g}" for name, err in self.step_errors]
        if not self.found:
            lines.append(f"bisect: every pass keeps numerics within {self.allowed:.3g} "
                         f"(final error {self.error:.3g})")
            return "\n".join(lines)
        lines.append(f"bisect: pass '{self.pass_name}' (step {self.index}) breaks numerics: "
                     f"error {self.error:.3g} > allowed {self.allowed:.3g}")
        if self.diverging_value:
            sub = f" (subgraph error {self.subgraph_error:.3g})" \
                if self.subgraph_error is not None else ""
            lines.append(f"first diverging value: %{self.diverging_value}{sub}")
        lines += ["# ---- before ----", self.before.rstrip(), "# ---- after ----",
                  self.after.rstrip()]
        return "\n".join(lines)


def bisect(
    model: Any,
    example_inputs: Any,
    pipeline: str = "default",
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    calibration: Iterable[Any] | None = None,
) -> BisectResult:
    """Run ``pipeline`` pass by pass against eager; return the first pass that breaks it."""
    module = as_module(model)
    inputs = check_example_inputs(example_inputs)
    steps = parse_pipeline(pipeline)
    with torch.no_grad():
        eager = [t for t in tree_flatten(module(*inputs))[0] if isinstance(t, torch.Tensor)]
    scale = max((t.detach().abs().max().item() for t in eager if t.numel()), default=0.0)
    allowed = atol + rtol * scale
    graph = capture(module, inputs)
    error = _error_vs_eager(graph, inputs, eager)
    history = [("capture", error)]
    if error > allowed:
        return BisectResult("capture", -1, error, allowed, "", graph.python(),
                            step_errors=history)
    calib = (rebatch(check_calibration(calibration, inputs), inputs)
             if calibration is not None else None)
    ctx = PassContext(example_inputs=inputs, calibration=calib, debug=True)
    for i, step in enumerate(steps):
        new, _ = run_pipeline(graph, [step], ctx)
        error = _error_vs_eager(new, inputs, eager)
        history.append((str(step), error))
        if error > allowed:
            result = BisectResult(str(step), i, error, allowed, step_errors=history)
            _minimise(result, graph, new, inputs, atol, rtol)
            return result
        graph = new
    return BisectResult(None, None, error, allowed, step_errors=history)


def _error_vs_eager(graph: Graph, inputs: tuple[torch.Tensor, ...],
                    eager: list[torch.Tensor]) -> float:
    with torch.no_grad():
        out = Specialization(graph, AtenExecutor(graph)).call(inputs)
    flat = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    try:
        return max_errors(eager, flat)[0]
    except AssertionError:  # a pass changed the output count or shapes: as wrong as it gets
        return float("inf")


# ---- minimisation ----------------------------------------------------------------------
def record_values(graph: Graph, inputs: Sequence[torch.Tensor]) -> dict[Value, torch.Tensor]:
    """Run ``graph`` with the reference ops and keep every value (inputs and constants too)."""
    values: dict[Value, torch.Tensor] = dict(zip(graph.inputs, inputs, strict=True))
    values.update(graph.constants)
    with torch.no_grad():
        for n in graph.nodes:
            out = n.opdef.ref(*[values[v] if v is not None else None for v in n.inputs],
                              **n.attrs)
            outs = out if isinstance(out, tuple | list) else (out,)
            values.update(zip(n.outputs, outs, strict=True))
    return values


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    a64, b64 = a.double(), b.double()
    both_nan = a64.isnan() & b64.isnan()
    same_inf = a64.isinf() & (a64 == b64)
    diff = (a64 - b64).abs().masked_fill(both_nan | same_inf, 0.0)
    finite = a64.abs().masked_fill(~a64.isfinite(), 0.0)
    return bool(diff.max() <= atol + rtol * finite.max())


def _minimise(result: BisectResult, before: Graph, after: Graph,
              inputs: tuple[torch.Tensor, ...], atol: float, rtol: float) -> None:
    """Fill ``result.before/after`` with the smallest subgraphs showing the divergence."""
    vb, va = record_values(before, inputs), record_values(after, inputs)
    by_name = {v.name: v for v in vb}
    agree: dict[Value, Value] = {}  # after value -> before value, for shared agreeing values
    target: tuple[Value, Value] | None = None
    for v in (*after.inputs, *after.constants):
        twin = by_name.get(v.name)
        if twin is not None and _close(vb[twin], va[v], atol, rtol):
            agree[v] = twin
    for n in after.nodes:
        for o in n.outputs:
            twin = by_name.get(o.name)
            if twin is None or twin.type != o.type:
                continue
            if _close(vb[twin], va[o], atol, rtol):
                agree[o] = twin
            elif target is None:
                target = (twin, o)
        if target is not None:
            break
    if target is None:  # nothing shared diverges (e.g. every node renamed): whole outputs
        result.before, result.after = before.python(), after.python()
        return
    twin, value = target
    sub_before = _cone(before, twin, set(agree.values()))
    sub_after = _cone(after, value, set(agree))
    result.diverging_value = value.name
    result.before, result.after = sub_before.python(), sub_after.python()
    ins_b = [vb[_named(before, v.name)] for v in sub_before.inputs]
    ins_a = [va[_named(after, v.name)] for v in sub_after.inputs]
    out_b = record_values(sub_before, ins_b)[sub_before.outputs[0]]
    out_a = record_values(sub_after, ins_a)[sub_after.outputs[0]]
    result.subgraph_error = max_errors([out_b], [out_a])[0]


def _named(graph: Graph, name: str) -> Value:
    for v in (*graph.inputs, *graph.constants, *(o for n in graph.nodes for o in n.outputs)):
        if v.name == name:
            return v
    raise GraphError(f"graph {graph.name} has no value named %{name}")


def _cone(graph: Graph, value: Value, frontier: set[Value]) -> Graph:
    """The nodes computing ``value`` from ``frontier`` values, graph inputs and constants,
    as a graph whose inputs are the non-constant values it reads."""
    needed: set[int] = set()
    stack = [value]
    seen: set[Value] = set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        node = graph.producer(v)
        if node is None or (v in frontier and v is not value):
            continue
        needed.add(id(node))
        stack += [i for i in node.inputs if i is not None]
    nodes = [n for n in graph.nodes if id(n) in needed]
    produced = {o for n in nodes for o in n.outputs}
    rw = Rewriter()
    mapping: dict[Value, Value] = {}
    for n in nodes:
        for v in n.inputs:
            if v is None or v in mapping or v in produced:
                continue
            mapping[v] = rw.const(graph.const(v), v.name) if graph.is_const(v) \
                else rw.add_input(v.name, v.type)
        new = rw.node(n.op, *[mapping[v] if v is not None else None for v in n.inputs],
                      name=n.name, meta=n.meta, **n.attrs)
        mapping.update(zip(n.outputs, new.outputs, strict=True))
    if value not in mapping:  # the diverging value is an input or constant itself
        mapping[value] = rw.add_input(value.name, value.type)
    rw.set_outputs([mapping[value]])
    return rw.finish(f"{graph.name}_{value.name}")


# ---- command line ----------------------------------------------------------------------
@command("bisect", "find the first pass of a pipeline that breaks a model's numerics")
def _bisect_cli(args: argparse.Namespace) -> int:
    from accel.models import get_model

    model, inputs = get_model(args.model, batch_size=args.batch_size)
    steps = parse_pipeline(args.pipeline)
    print(f"accel bisect: {args.model}, pipeline {format_pipeline(steps)}")
    result = bisect(model, inputs, args.pipeline, atol=args.atol, rtol=args.rtol)
    print(result)
    return 1 if result.found else 0


@_bisect_cli.args
def _bisect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in model name (see accel models)")
    p.add_argument("--pipeline", default="default", help="pass pipeline spec")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=None)
