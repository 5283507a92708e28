"""The TorchDynamo backend: ``torch.compile(model, backend="accel", options={...})``.

Dynamo hands over a torch-level fx graph whose parameters and buffers arrive as inputs.
For inference they are frozen into constants (as TorchInductor's freezing does); the graph
is then captured and compiled by the same driver as ``accel.compile``
(:mod:`accel.driver`), with the same settings: ``options`` holds ``pipeline``, ``target``,
``calibration``, ``debug`` and ``dump``, and every other key is a target option. A graph
that needs gradients runs eagerly, with a one-time warning. Graph breaks are counted in the
report; ``accel.reports()`` returns the reports.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.fx as fx

from accel.driver import CompileConfig, compile_captured, make_config
from accel.errors import AccelError
from accel.report import Report

REPORTS: list[Report] = []
"""Reports of the graphs compiled through torch.compile, oldest first (``accel.reports()``)."""
_warned_grad = False
COMPILE_KEYS = ("pipeline", "target", "calibration", "debug", "dump")
"""Keys of ``options`` that are compile settings; every other key is a target option."""


def _is_weight(node: fx.Node, value: Any) -> bool:
    if isinstance(value, torch.nn.Parameter):
        return True
    grapharg = node.meta.get("grapharg")
    source = getattr(grapharg, "source", None)
    name = getattr(source, "name", "") if source is not None else ""
    name = name() if callable(name) else name
    return "_buffers" in str(name) or "_parameters" in str(name)


def accel_backend(gm: fx.GraphModule, example_inputs: list[Any], options: dict | None = None,
                  **kwargs: Any) -> Any:
    """Compile one TorchDynamo graph with accel; returns the callable Dynamo runs."""
    global _warned_grad
    opts = {**(options or {}), **kwargs}
    breaks = _new_graph_breaks()
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in example_inputs)
    if needs_grad:
        if not _warned_grad:
            warnings.warn("accel: this graph needs gradients (grad mode is on and inputs or "
                          "weights require grad); it runs eagerly. accel compiles inference: "
                          "wrap calls in torch.no_grad() or torch.inference_mode()", stacklevel=2)
            _warned_grad = True
        REPORTS.append(Report(model="dynamo graph", eager_fallbacks=["needs gradients"],
                              graph_breaks=breaks))
        return gm.forward
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    frozen = [_is_weight(n, v) for n, v in zip(placeholders, example_inputs, strict=True)]
    runtime = tuple(a for a, f in zip(example_inputs, frozen, strict=True)
                    if isinstance(a, torch.Tensor) and not f)
    settings = {k: opts.pop(k) for k in COMPILE_KEYS if k in opts}
    name = f"dynamo graph {len(REPORTS)}"
    config = make_config(name=name, pipeline=settings.get("pipeline", "default"),
                         target=settings.get("target", "auto"), example_inputs=runtime,
                         calibration=settings.get("calibration"), options=opts,
                         debug=settings.get("debug"), dump=settings.get("dump"),
                         strict_calibration=False)
    compiled = _DynamoGraph(gm, frozen, config)
    compiled.report.graph_breaks = breaks
    return compiled


class _DynamoGraph:
    """Compiles lazily on first call (real tensors), once per set of non-tensor arguments."""

    def __init__(self, gm: fx.GraphModule, frozen: list[bool], config: CompileConfig) -> None:
        self.gm, self.frozen, self.config = gm, frozen, config
        self.compiled: dict[tuple, Any] = {}
        self.report = Report(model=config.name, pipeline=config.pipeline, target=config.target)
        REPORTS.append(self.report)

    @torch._dynamo.disable  # noqa: SLF001 - compile outside of Dynamo's frame evaluation
    def __call__(self, *args: Any) -> Any:
        key = tuple(a for a in args if not isinstance(a, torch.Tensor))
        fn = self.compiled.get(key)
        if fn is None:
            fn = self._compile(args)
            self.compiled[key] = fn
        runtime = [a for a, f in zip(args, self.frozen, strict=True)
                   if isinstance(a, torch.Tensor) and not f]
        return fn(*runtime)

    def _compile(self, args: tuple) -> Any:
        from accel.frontend.capture import capture_fx

        positions = [i for i, (a, f) in enumerate(zip(args, self.frozen, strict=True))
                     if isinstance(a, torch.Tensor) and not f]

        def capture(runtime: tuple[torch.Tensor, ...]) -> Any:
            full = list(args)
            for i, t in zip(positions, runtime, strict=True):
                full[i] = t
            return capture_fx(self.gm, full, self.frozen, name="dynamo_graph")

        try:
            compiled = compile_captured(capture, tuple(args[i] for i in positions),
                                        self.config, self.report)
        except AccelError as e:
            warnings.warn(f"accel: could not compile a TorchDynamo graph, running it eagerly: "
                          f"{e}", stacklevel=2)
            self.report.eager_fallbacks.append(str(e).splitlines()[0])
            return _Eager(self.gm, args, self.frozen)
        if self.compiled:
            self.report.recompilations += 1
        return compiled


class _Eager:
    def __init__(self, gm: fx.GraphModule, args: tuple, frozen: list[bool]) -> None:
        self.gm, self.args, self.frozen = gm, args, frozen

    def __call__(self, *runtime: Any) -> Any:
        it = iter(runtime)
        full = [a if (not isinstance(a, torch.Tensor) or f) else next(it)
                for a, f in zip(self.args, self.frozen, strict=True)]
        return self.gm(*full)


_breaks_counted = 0
"""Graph breaks already attributed to a report."""


def _new_graph_breaks() -> int:
    """Graph breaks recorded since the last graph handed to the backend."""
    global _breaks_counted
    total = graph_breaks()
    new = total - _breaks_counted if total >= _breaks_counted else total  # counters reset
    _breaks_counted = total
    return new


def graph_breaks() -> int:
    """Graph breaks TorchDynamo has recorded in this process."""
    from torch._dynamo.utils import counters

    return sum(counters["graph_break"].values())
