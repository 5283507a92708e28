"""Pipelines: parse a spec string, expand presets, run the passes, report and dump.

Spec grammar: a comma-separated list of steps, each a pass or preset name with optional
options in braces; list values go in brackets::

    "default,fold-bn,tome{r=8,schedule=list,layers=[0,4,8]}"

Presets expand in place. The lossless ``default`` preset is what ``accel.compile`` runs
when no pipeline is given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accel.errors import AccelError, AccelValueError, PassError
from accel.ir.graph import Graph
from accel.passes.registry import PassContext, get_pass
from accel.report import PassRecord


@dataclass(frozen=True)
class Preset:
    """A named pipeline."""

    spec: str
    doc: str


PRESETS: dict[str, Preset] = {
    "none": Preset("", "no passes: run the captured graph as is"),
    "cleanup": Preset("fold-constants,remove-noops,cse,dce",
                      "lossless cleanups: constant folding (first, so that folded x*1 are seen "
                      "as no-ops), no-op removal, CSE, DCE"),
}
"""Presets by name. ``default`` is defined by :mod:`accel.passes.presets`."""


def register_preset(name: str, spec: str, doc: str) -> None:
    """Add or replace a preset."""
    PRESETS[name] = Preset(spec, doc)


@dataclass(frozen=True)
class PassStep:
    """One parsed pipeline step: a pass name and its typed options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    preset: str | None = field(default=None, compare=False)
    """The preset this step came from; ``None`` when the pipeline names it directly."""

    def __str__(self) -> str:
        if not self.options:
            return self.name
        opts = ",".join(f"{k}={_fmt(v)}" for k, v in self.options.items())
        return f"{self.name}{{{opts}}}"


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "[" + ",".join(map(str, v)) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def parse_pipeline(spec: str, _depth: int = 0) -> list[PassStep]:
    """Parse a pipeline string into typed steps; errors name the bad part and the choices."""
    if not isinstance(spec, str):
        raise AccelValueError(f"pipeline must be a string like 'default,fold-bn', got "
                              f"{type(spec).__name__}")
    if _depth > 8:
        raise AccelValueError("pipeline presets nest too deeply (a preset includes itself?)")
    steps: list[PassStep] = []
    for item in _split_top(spec):
        name, opts_text = _split_options(item, spec)
        if name in PRESETS:
            if opts_text:
                raise AccelValueError(f"preset '{name}' takes no options (in {spec!r})")
            steps += [PassStep(s.name, s.options, s.preset or name)
                      for s in parse_pipeline(PRESETS[name].spec, _depth + 1)]
            continue
        info = get_pass(name)
        options: dict[str, Any] = {}
        for kv in _split_top(opts_text or ""):
            if "=" not in kv:
                raise AccelValueError(f"pass '{name}': option '{kv}' needs a value "
                                      f"(write {kv}=...); options: {_describe(info)}")
            key, val = (s.strip() for s in kv.split("=", 1))
            if key not in info.options:
                raise AccelValueError(f"pass '{name}' has no option '{key}'; options: "
                                      f"{_describe(info)}")
            options[key] = info.options[key].parse(val, name)
        steps.append(PassStep(name, options))
    return steps


def _describe(info: Any) -> str:
    return ", ".join(o.describe() for o in info.options.values()) or "(none)"


def _split_top(text: str) -> list[str]:
    """Split on commas outside braces and brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth < 0:
                raise AccelValueError(f"unbalanced '{ch}' in pipeline {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise AccelValueError(f"unclosed brace or bracket in pipeline {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _split_options(item: str, spec: str) -> tuple[str, str | None]:
    if "{" not in item:
        if "}" in item:
            raise AccelValueError(f"unexpected '}}' in pipeline step {item!r} of {spec!r}")
        return item.strip(), None
    name, rest = item.split("{", 1)
    if not rest.endswith("}"):
        raise AccelValueError(f"pipeline step {item!r} must end with '}}' (in {spec!r})")
    return name.strip(), rest[:-1]


def format_pipeline(steps: list[PassStep]) -> str:
    """The canonical spec string of parsed steps."""
    return ",".join(str(s) for s in steps)


def run_pipeline(
    graph: Graph,
    steps: list[PassStep],
    ctx: PassContext,
    dump_dir: str | os.PathLike | None = None,
) -> tuple[Graph, list[PassRecord]]:
    """Run ``steps`` in order; returns the final graph and one record per pass."""
    dump = Path(dump_dir) if dump_dir else None
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / "00_captured.py").write_text(graph.python())
    records = []
    for i, step in enumerate(steps, 1):
        info = get_pass(step.name)
        rec = PassRecord(step.name, dict(step.options), preset=step.preset,
                         nodes_before=len(graph),
                         flops_before=graph.flops(), params_before=graph.num_params(),
                         lossy=info.lossy)
        ctx.record = rec
        t0 = time.perf_counter()
        try:
            new = info.fn(graph, ctx, **step.options)
        except AccelError:
            raise
        except Exception as e:
            raise PassError(f"pass '{step.name}' failed on graph {graph.name}: "
                            f"{type(e).__name__}: {e}") from e
        finally:
            ctx.record = None
        rec.seconds = time.perf_counter() - t0
        if not isinstance(new, Graph):
            raise PassError(f"pass '{step.name}' returned {type(new).__name__}, not a Graph")
        if ctx.debug:
            try:
                new.verify()
            except AccelError as e:
                raise PassError(f"graph is invalid after pass '{step.name}': {e}") from e
        rec.changed = new is not graph and _differs(graph, new)
        rec.nodes_after, rec.flops_after, rec.params_after = len(new), new.flops(), new.num_params()
        records.append(rec)
        if dump is not None:
            (dump / f"{i:02d}_{step.name}.py").write_text(new.python())
        graph = new
    return graph, records


def _differs(a: Graph, b: Graph) -> bool:
    if len(a.nodes) != len(b.nodes) or a.outputs != b.outputs:
        return True
    if {id(n) for n in a.nodes} != {id(n) for n in b.nodes}:
        return True
    return set(a.constants) != set(b.constants)
