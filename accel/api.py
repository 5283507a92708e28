"""The public entry point: ``accel.compile``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from accel.calibration import lossy_accuracy, rebatch
from accel.errors import AccelTypeError
from accel.frontend import as_module, capture, check_example_inputs
from accel.ir.graph import Graph
from accel.passes import PassContext, format_pipeline, parse_pipeline, run_pipeline
from accel.report import Report
from accel.runtime import CompiledModel, Specialization
from accel.targets import LowerContext, lower, resolve_target


def compile(  # noqa: A001 - mirrors torch.compile
    model: Any,
    example_inputs: Any,
    pipeline: str = "default",
    target: str = "auto",
    *,
    calibration: Iterable[Any] | None = None,
    options: dict[str, Any] | None = None,
    debug: bool | None = None,
    dump: str | os.PathLike | None = None,
    name: str | None = None,
) -> CompiledModel:
    """Compile ``model`` for inference on inputs like ``example_inputs``.

    Args:
        model: an ``nn.Module`` (an fx ``GraphModule`` too) or a callable on tensors.
        example_inputs: a tensor or tuple of tensors the model is called with.
        pipeline: pass pipeline spec, e.g. ``"default,fold-bn"``; see ``accel passes``.
        target: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"reference"``.
        calibration: example inputs for lossy passes (quantization, token reduction).
        options: target options (e.g. ``{"cudagraphs": True}``).
        debug: verify the graph after every pass (default: ``ACCEL_DEBUG`` env var).
        dump: directory to write the graph after every pass (or ``ACCEL_DUMP``).
        name: model name for reports.

    Returns:
        A :class:`CompiledModel`, callable like the model, with ``.report`` and ``.graph``.
    """
    module = as_module(model)
    inputs = check_example_inputs(example_inputs)
    steps = parse_pipeline(pipeline)
    concrete = resolve_target(target, inputs)
    name = name or type(module).__name__
    if _in_training_mode(module):
        warnings.warn(f"accel: {name} is in training mode; accel compiles for inference, so "
                      "call model.eval() first (dropout and BatchNorm statistics differ)",
                      stacklevel=2)
    calib = _check_calibration(calibration, inputs) if calibration is not None else None
    debug = bool(int(os.environ.get("ACCEL_DEBUG", "0"))) if debug is None else debug
    report = Report(model=name, pipeline=format_pipeline(steps), target=concrete)
    opts = dict(options or {})

    def specialize(args: tuple[torch.Tensor, ...]) -> Specialization:
        first = not report.passes
        graph = capture(module, args, name)
        calib_b = rebatch(calib, args) if calib is not None else None
        ctx = PassContext(example_inputs=args, calibration=calib_b, target=concrete, debug=debug,
                          options=opts)
        if debug:
            graph.verify()
        captured = graph
        graph, records = run_pipeline(graph, steps, ctx, dump_dir=dump if first else None)
        lctx = LowerContext(options=opts, example_inputs=args)
        executable = lower(graph, concrete, lctx)
        if first:
            report.accuracy = lossy_accuracy(captured, graph, records, calib_b or [args])
            report.passes = records
            report.lowering = lctx.notes
            report.executor = getattr(executable, "name", type(executable).__name__)
            report.fallbacks = _describe_fallbacks(graph)
        return Specialization(graph, executable)

    return CompiledModel(name, specialize, inputs, report)


def _describe_fallbacks(graph: Graph) -> list[str]:
    out = []
    for n in graph.fallbacks():
        reason = n.meta.get("fallback_reason", "no IR lowering for this ATen op")
        src = f" in {n.meta['source']}" if n.meta.get("source") else ""
        out.append(f"{n.name} ({n.attrs['target']}){src}: {reason}")
    return out


def _check_calibration(data: Iterable[Any], example: tuple[torch.Tensor, ...]
                       ) -> list[tuple[torch.Tensor, ...]]:
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


def compile_graph(gm: torch.fx.GraphModule, args: tuple, frozen: list[bool],
                  options: dict[str, Any], report: Report) -> CompiledModel:
    """Compile a TorchDynamo graph (the ``torch.compile`` backend path).

    Inputs marked ``frozen`` are weights: they become constants. The returned model takes
    the remaining tensor inputs, in order.
    """
    from accel.frontend import capture_fx

    opts = dict(options)
    pipeline = opts.pop("pipeline", "default")
    target = opts.pop("target", "auto")
    debug = bool(opts.pop("debug", False))
    dump = opts.pop("dump", None)
    steps = parse_pipeline(pipeline)
    runtime_args = tuple(a for a, f in zip(args, frozen, strict=True)
                         if isinstance(a, torch.Tensor) and not f)
    concrete = resolve_target(target, runtime_args)
    report.pipeline, report.target = format_pipeline(steps), concrete
    positions = [i for i, (a, f) in enumerate(zip(args, frozen, strict=True))
                 if isinstance(a, torch.Tensor) and not f]

    def specialize(runtime: tuple[torch.Tensor, ...]) -> Specialization:
        first = not report.passes
        full = list(args)
        for i, t in zip(positions, runtime, strict=True):
            full[i] = t
        graph = capture_fx(gm, full, frozen, name="dynamo_graph")
        ctx = PassContext(example_inputs=runtime, target=concrete, debug=debug, options=opts)
        graph, records = run_pipeline(graph, steps, ctx, dump_dir=dump if first else None)
        lctx = LowerContext(options=opts, example_inputs=runtime)
        executable = lower(graph, concrete, lctx)
        if first:
            report.passes, report.lowering = records, lctx.notes
            report.executor = getattr(executable, "name", type(executable).__name__)
            report.fallbacks = _describe_fallbacks(graph)
        return Specialization(graph, executable)

    return CompiledModel(report.model, specialize, runtime_args, report)


def _in_training_mode(module: torch.nn.Module) -> bool:
    """Whether a module whose behaviour depends on the mode (dropout, BN) is training."""
    mode_dependent = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
    return any(m.training and isinstance(m, mode_dependent) for m in module.modules())
