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
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from accel import cache, env
from accel.backends.aten import AtenExecutor
from accel.calibration import lossy_accuracy, rebatch
from accel.errors import AccelTypeError
from accel.frontend.dynamic import axes_spec, normalize_spec
from accel.host import host
from accel.ir.graph import Graph
from accel.passes import PassContext, PassStep, format_pipeline, parse_pipeline, run_pipeline
from accel.passes.common.padding import padding_mask_or_none
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
                     config: CompileConfig, report: Report | None = None,
                     cache_key: str | None = None, serve_example: bool = True
                     ) -> CompiledModel:
    """A :class:`CompiledModel` whose specializations are ``capture(inputs, dynamic_shapes)``
    optimized and lowered as ``config`` says; the first one fills ``report``.

    ``dynamic_shapes`` is torch.export's specification (``None``: static): the user's for the
    first specialization, the dims automatic dynamic found changing for later ones.
    ``cache_key`` (what the model computes, :func:`accel.cache.model_fingerprint`) turns on
    the persistent compile cache: each specialization is looked up there before it is
    captured, and stored after it is compiled. ``serve_example``: see
    :class:`~accel.runtime.CompiledModel`.
    """
    report = report if report is not None else Report(model=config.name)
    report.pipeline, report.target = config.pipeline, config.target
    report.host = host().describe()
    reported = bool(report.lowering)  # the first specialization fills the report and dumps
    base_key = _config_key(cache_key, config) if cache_key else None

    def specialize(args: Batch, dynamic: Any, keep_weights: bool = False) -> Specialization:
        nonlocal reported
        first = not reported and not keep_weights
        if isinstance(dynamic, AutoDynamic):
            dynamic = axes_spec(dynamic.axes, len(args))
        key = None
        if base_key is not None and not keep_weights:
            key = cache.make_key(base_key, [(tuple(a.shape), str(a.dtype)) for a in args],
                                 repr(dynamic))
            t0 = time.perf_counter()
            hit = _from_cache(key)
            if hit is not None:
                spec, entry = hit
                if first:
                    reported = True
                    _restore_report(report, entry, time.perf_counter() - t0, key)
                return spec
        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        graph = capture(args, dynamic)
        stages["capture"] = time.perf_counter() - t0
        calib = None
        if config.calibration is not None:
            calib = config.calibration if graph.is_dynamic else rebatch(config.calibration, args)
        ctx = PassContext(example_inputs=args, calibration=calib, target=config.target,
                          debug=config.debug, options=dict(config.options))
        if config.debug:
            graph.verify()
        captured = graph
        t0 = time.perf_counter()
        graph, records = run_pipeline(graph, list(config.steps), ctx,
                                      dump_dir=config.dump if first else None)
        stages["passes"] = time.perf_counter() - t0
        accuracy = {}
        if first:  # before lowering: a target may move the weights out of the graph
            t0 = time.perf_counter()
            mask = padding_mask_or_none(captured) if any(
                r.lossy and r.changed for r in records) else None
            accuracy = lossy_accuracy(captured, graph, records, calib or [args], token_mask=mask)
            stages["accuracy"] = time.perf_counter() - t0
        del captured
        lctx = LowerContext(options=dict(config.options), example_inputs=args,
                            dump_dir=config.dump, keep_model=key is not None,
                            keep_weights=keep_weights)
        t0 = time.perf_counter()
        executable = lower(graph, config.target, lctx)
        lowering = time.perf_counter() - t0
        stages["choice"] = lctx.seconds.get("choice", 0.0)
        stages["lowering"] = lowering - stages["choice"]
        if first:
            reported = True
            report.accuracy = accuracy
            report.passes = records
            report.lowering = [*config.notes, *lctx.notes]
            report.executor = executable.name
            report.fallbacks = describe_fallbacks(graph)
            report.stages = stages
        if key is not None:
            _to_cache(key, graph, executable, {
                "accuracy": accuracy, "passes": records, "lowering": list(lctx.notes),
                "fallbacks": describe_fallbacks(graph), "stages": stages,
                "compile_seconds": sum(stages.values())}, report if first else None)
        if not keep_weights:
            release_constants(graph, executable)
        return Specialization(graph, executable)

    return CompiledModel(config.name, specialize, example_inputs, report,
                         dynamic_shapes=config.dynamic_shapes, serve_example=serve_example)


_SESSION_EXECUTORS = ("onnxruntime", "openvino")
"""Executors that hold their own copy of the weights (the IR's copy can go)."""


def release_constants(graph: Graph, executable: Any) -> None:
    """Once a session executor owns the weights, drop the graph's copy of large constants
    (their shapes and dtypes stay): the model keeps one copy of its weights, not two."""
    if getattr(executable, "name", "") in _SESSION_EXECUTORS:
        graph.release_constants()
        own = getattr(executable, "graph", None)  # e.g. the int8 graph's fp32 form
        if isinstance(own, Graph) and own is not graph:
            own.release_constants()


def _config_key(model_key: str, config: CompileConfig) -> str:
    calib = cache.batches_fingerprint(config.calibration) if config.calibration else ""
    prof = host()
    return cache.make_key(model_key, config.pipeline, config.target,
                          sorted((k, repr(v)) for k, v in config.options.items()),
                          repr(config.dynamic_shapes), calib, sorted(cache.versions().items()),
                          prof.describe(), sorted(prof.isa))


def _from_cache(key: str) -> tuple[Specialization, cache.Entry] | None:
    entry = cache.load(key)
    if entry is None:
        return None
    try:
        if entry.executor == "aten":
            executable: Any = AtenExecutor(entry.graph)
        elif entry.executor == "onnxruntime":
            from accel.backends.onnx.ort import lower_onnxruntime
            executable = lower_onnxruntime(entry.graph, model_file=entry.payload_file)
        elif entry.executor == "openvino":
            from accel.backends.openvino import lower_openvino
            executable = lower_openvino(entry.graph, model_file=entry.payload_file)
        else:
            return None
    except Exception as e:  # noqa: BLE001 - a stale entry is rebuilt, never fatal
        warnings.warn(f"accel: compile cache entry {key[:12]} could not be loaded ({e}); "
                      "compiling again", stacklevel=4)
        entry.verified()
        return None
    if not entry.verified():  # the weights it started from do not hash as stored
        return None
    return Specialization(entry.graph, executable), entry


def _to_cache(key: str, graph: Graph, executable: Any, info: dict[str, Any],
              report: Report | None) -> None:
    name = getattr(executable, "name", "")
    payload = getattr(executable, "model_file", None)
    if payload is not None:
        executable.model_file = None  # the cache takes a copy; the temporary file goes
    try:
        if name in _SESSION_EXECUTORS:
            if payload is None:
                return
            stored = graph.without_constants()
        elif name == "aten":
            stored = graph
        else:  # Triton kernels have their own cache; CUDA graphs are not portable
            return
        done = cache.store(key, cache.Entry(stored, name, info), payload)
        if done is not None and report:
            report.lowering.append(f"compile cache: stored {key[:12]} under {cache.root()}")
    finally:
        if payload is not None:
            shutil.rmtree(payload.parent, ignore_errors=True)


def _restore_report(report: Report, entry: cache.Entry, seconds: float, key: str) -> None:
    info = entry.report
    report.accuracy = dict(info.get("accuracy", {}))
    report.passes = list(info.get("passes", []))
    report.fallbacks = list(info.get("fallbacks", []))
    report.executor = entry.executor
    first = info.get("compile_seconds", 0.0)
    report.lowering = [*info.get("lowering", []),
                       f"compile cache: loaded {key[:12]} from {cache.root()} in "
                       f"{seconds:.2f} s (the compile that stored it took {first:.2f} s)"]
    report.stages = {"cache": seconds}


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
