"""The compile driver: one path from a captured graph to a :class:`CompiledModel`.

``accel.compile`` and the ``torch.compile`` backend differ only in how a graph is captured
(torch.export of a module, or the FX graph TorchDynamo hands over with weights frozen);
everything after capture is here, once: the settings are checked (:func:`make_config`),
and each input-shape specialization is captured, run through the pass pipeline, lowered for
the target and reported (:func:`compile_captured`), with the accuracy of lossy passes
measured on the calibration data either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from accel import env
from accel.calibration import lossy_accuracy, rebatch
from accel.errors import AccelTypeError
from accel.frontend.dynamic import axes_spec, normalize_spec
from accel.ir.graph import Graph
from accel.passes import PassContext, PassStep, format_pipeline, parse_pipeline, run_pipeline
from accel.report import Report
from accel.runtime import AutoDynamic, CompiledModel, Specialization
from accel.targets import LowerContext, check_options, lower, resolve_target

Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class CompileConfig:
    """How to compile, checked once: the same settings for both front doors."""

    name: str
    """Model name for reports."""
    steps: tuple[PassStep, ...]
    """The parsed pipeline, presets expanded."""
    target: str
    """The concrete lowering target."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Target options (checked against the target's; read-only, copied per compile)."""
    calibration: list[Batch] | None = None
    """Checked calibration batches, or ``None``."""
    debug: bool = False
    """Verify the graph after capture and after every pass."""
    dump: Path | None = None
    """Where to write the graph after every pass and the generated kernels."""
    dynamic_shapes: Any = None
    """The user's ``dynamic_shapes`` (``None``: automatic dynamic, static first)."""
    notes: tuple[str, ...] = ()
    """Lines for the report's lowering section about the settings (calibration not used...)."""

    @property
    def pipeline(self) -> str:
        """The pipeline as a spec string."""
        return format_pipeline(list(self.steps))


def make_config(*, name: str, pipeline: str, target: str, example_inputs: Batch,
                calibration: Iterable[Any] | None = None,
                options: dict[str, Any] | None = None, debug: bool | None = None,
                dump: str | os.PathLike | None = None, strict_calibration: bool = True,
                dynamic_shapes: Any = None) -> CompileConfig:
    """Parse and check every setting; errors name the bad one.

    With ``strict_calibration=False`` (torch.compile graphs, whose inputs need not be the
    model's), calibration data that does not fit the graph's inputs is not an error: the
    graph compiles without it and the report says why.
    """
    steps = tuple(parse_pipeline(pipeline))
    concrete = resolve_target(target, example_inputs)
    opts = dict(options or {})
    check_options(concrete, opts)
    notes: tuple[str, ...] = ()
    calib = None
    if calibration is not None:
        if strict_calibration:
            calib = check_calibration(calibration, example_inputs)
        else:
            try:
                calib = check_calibration(calibration, example_inputs)
                notes = (f"calibration data used for this graph: {len(calib)} item(s) fit "
                         "its inputs",)
            except AccelTypeError as e:
                notes = (f"calibration data not used for this graph ({e}); lossy passes "
                         "calibrate on its example inputs",)
    return CompileConfig(
        name=name, steps=steps, target=concrete, options=MappingProxyType(opts),
        calibration=calib,
        debug=env.debug() if debug is None else bool(debug),
        dump=Path(dump) if dump is not None else env.dump_dir(), notes=notes,
        dynamic_shapes=normalize_spec(dynamic_shapes, example_inputs))


def compile_captured(capture: Callable[[Batch, Any], Graph], example_inputs: Batch,
                     config: CompileConfig, report: Report | None = None) -> CompiledModel:
    """A :class:`CompiledModel` whose specializations are ``capture(inputs, dynamic_shapes)``
    optimized and lowered as ``config`` says; the first one fills ``report``.

    ``dynamic_shapes`` is torch.export's specification (``None``: static): the user's for the
    first specialization, the dims automatic dynamic found changing for later ones.
    """
    report = report if report is not None else Report(model=config.name)
    report.pipeline, report.target = config.pipeline, config.target
    reported = bool(report.lowering)  # the first specialization fills the report and dumps

    def specialize(args: Batch, dynamic: Any) -> Specialization:
        nonlocal reported
        first = not reported
        if isinstance(dynamic, AutoDynamic):
            dynamic = axes_spec(dynamic.axes, len(args))
        graph = capture(args, dynamic)
        calib = None
        if config.calibration is not None:
            calib = config.calibration if graph.is_dynamic else rebatch(config.calibration, args)
        ctx = PassContext(example_inputs=args, calibration=calib, target=config.target,
                          debug=config.debug, options=dict(config.options))
        if config.debug:
            graph.verify()
        captured = graph
        graph, records = run_pipeline(graph, list(config.steps), ctx,
                                      dump_dir=config.dump if first else None)
        lctx = LowerContext(options=dict(config.options), example_inputs=args,
                            dump_dir=config.dump)
        executable = lower(graph, config.target, lctx)
        if first:
            reported = True
            report.accuracy = lossy_accuracy(captured, graph, records, calib or [args])
            report.passes = records
            report.lowering = [*config.notes, *lctx.notes]
            report.executor = executable.name
            report.fallbacks = describe_fallbacks(graph)
        return Specialization(graph, executable)

    return CompiledModel(config.name, specialize, example_inputs, report,
                         dynamic_shapes=config.dynamic_shapes)


def describe_fallbacks(graph: Graph) -> list[str]:
    """One report line per node run through the ATen fallback, with the reason."""
    out = []
    for n in graph.fallbacks():
        reason = n.meta.get("fallback_reason", "no IR lowering for this ATen op")
        src = f" in {n.meta['source']}" if n.meta.get("source") else ""
        out.append(f"{n.name} ({n.attrs['target']}){src}: {reason}")
    return out


def check_calibration(data: Iterable[Any], example: Sequence[torch.Tensor]) -> list[Batch]:
    """Calibration items as tuples of tensors like ``example`` (any batch size)."""
    if isinstance(data, torch.Tensor):
        raise AccelTypeError("calibration is a single tensor; pass an iterable of example "
                             "inputs, e.g. [x1, x2] or a DataLoader of input tuples")
    batches = []
    for i, item in enumerate(data):
        if not isinstance(item, torch.Tensor | tuple | list):
            raise AccelTypeError(f"calibration item {i} is a {type(item).__name__}; expected a "
                                 "tensor or a tuple of tensors like example_inputs")
        batch = (item,) if isinstance(item, torch.Tensor) else tuple(item)
        if len(batch) != len(example):
            raise AccelTypeError(f"calibration item {i} has {len(batch)} tensor(s), the model "
                                 f"takes {len(example)} like example_inputs")
        for j, (t, e) in enumerate(zip(batch, example, strict=True)):
            if not isinstance(t, torch.Tensor) or t.dtype != e.dtype or t.dim() != e.dim():
                got = f"{t.dtype}, rank {t.dim()}" if isinstance(t, torch.Tensor) \
                    else type(t).__name__
                raise AccelTypeError(f"calibration item {i}, input {j}: expected {e.dtype} of "
                                     f"rank {e.dim()} like example_inputs, got {got}")
            if t.shape[1:] != e.shape[1:]:
                raise AccelTypeError(f"calibration item {i}, input {j}: shape {tuple(t.shape)} "
                                     f"differs from example_inputs {tuple(e.shape)} beyond "
                                     "the batch dimension")
        batches.append(batch)
    if not batches:
        raise AccelTypeError("calibration data is empty; pass an iterable of example inputs")
    return batches
