"""The torch.compile front door: ``torch.compile(model, backend="accel", options={...})``.

Each graph TorchDynamo hands over (:mod:`accel.frontend.dynamo`: weights frozen into
constants) is compiled by the same driver as ``accel.compile`` (:mod:`accel.driver`), with
the same settings: ``options`` holds ``pipeline``, ``target``, ``calibration``, ``debug``
and ``dump``, and every other key is a target option (checked). Settings errors raise at
once; a graph accel cannot compile runs eagerly with a warning and the reason in its
report; a graph that needs gradients runs eagerly, with a one-time warning. Graph breaks
are counted in the reports, which ``accel.reports()`` returns.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.fx as fx

from accel.driver import CompileConfig, compile_captured, make_config
from accel.errors import AccelError
from accel.frontend.dynamo import DynamoGraph, new_graph_breaks
from accel.report import Report

REPORTS: list[Report] = []
"""Reports of the graphs compiled through torch.compile, oldest first (``accel.reports()``)."""
_warned = set()
COMPILE_KEYS = ("pipeline", "target", "calibration", "debug", "dump")
"""Keys of ``options`` that are compile settings; every other key is a target option."""


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def accel_backend(gm: fx.GraphModule, example_inputs: list[Any], options: dict | None = None,
                  mode: str | None = None, **kwargs: Any) -> Any:
    """Compile one TorchDynamo graph with accel; returns the callable Dynamo runs."""
    opts = {**(options or {}), **kwargs}
    breaks = new_graph_breaks()
    if mode is not None:
        _warn_once("mode", f"accel: torch.compile mode={mode!r} has no meaning for accel and is "
                           "ignored; choose what to run with options={'pipeline': ...}")
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs)
    if needs_grad:
        _warn_once("grad", "accel: this graph needs gradients (grad mode is on and inputs or "
                           "weights require grad); it runs eagerly. accel compiles inference: "
                           "wrap calls in torch.no_grad() or torch.inference_mode()")
        REPORTS.append(Report(model="dynamo graph", eager_fallbacks=["needs gradients"],
                              graph_breaks=breaks))
        return gm.forward
    graph = DynamoGraph(gm, example_inputs)
    settings = {k: opts.pop(k) for k in COMPILE_KEYS if k in opts}
    config = make_config(name=f"dynamo graph {len(REPORTS)}",
                         pipeline=settings.get("pipeline", "default"),
                         target=settings.get("target", "auto"),
                         example_inputs=graph.runtime_inputs(example_inputs),
                         calibration=settings.get("calibration"), options=opts,
                         debug=settings.get("debug"), dump=settings.get("dump"),
                         strict_calibration=False)
    compiled = _Compiled(graph, config)
    compiled.report.graph_breaks = breaks
    return compiled


class _Compiled:
    """Compiles lazily on first call (real tensors), once per set of non-tensor arguments."""

    def __init__(self, graph: DynamoGraph, config: CompileConfig) -> None:
        self.graph, self.config = graph, config
        self.compiled: dict[tuple, Any] = {}
        self.report = Report(model=config.name)
        REPORTS.append(self.report)

    @torch._dynamo.disable  # noqa: SLF001 - compile outside of Dynamo's frame evaluation
    def __call__(self, *args: Any) -> Any:
        key = self.graph.key(args)
        fn = self.compiled.get(key)
        if fn is None:
            fn = self._compile(args)
            self.compiled[key] = fn
        if fn is _EAGER:
            return self.graph.original(*args)
        return fn(*self.graph.runtime_inputs(args))

    def _compile(self, args: tuple) -> Any:
        try:
            compiled = compile_captured(lambda runtime, _: self.graph.capture(args, runtime),
                                        self.graph.runtime_inputs(args), self.config,
                                        self.report)
        except AccelError as e:
            warnings.warn(f"accel: could not compile a TorchDynamo graph, running it eagerly: "
                          f"{e}", stacklevel=2)
            self.report.eager_fallbacks.append(str(e).splitlines()[0])
            return _EAGER
        if self.compiled:
            self.report.recompilations += 1
        return compiled


_EAGER = object()
"""Marks a graph accel could not compile: it runs as Dynamo handed it."""
