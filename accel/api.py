"""The public entry points: ``accel.compile`` and ``accel.reports``."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from accel import cache
from accel.driver import compile_captured, make_config
from accel.errors import AccelValueError
from accel.frontend import as_module, capture, check_example_inputs
from accel.ir.graph import Graph
from accel.passes import PassContext, parse_pipeline, run_pipeline
from accel.report import Report
from accel.runtime import CompiledModel


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
    dynamic_shapes: Any = None,
) -> CompiledModel:
    """Compile ``model`` for inference on inputs like ``example_inputs``.

    Args:
        model: an ``nn.Module`` (an fx ``GraphModule`` too) or a callable on tensors.
        example_inputs: a tensor or tuple of tensors the model is called with.
        pipeline: pass pipeline spec, e.g. ``"default,fold-bn"``; see ``accel passes``.
        target: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"reference"``.
        calibration: example inputs for lossy passes (quantization, token reduction).
        options: target options (e.g. ``{"executor": "ort"}`` on CPU,
            ``{"cudagraphs": True}`` on CUDA); unknown ones are an error.
        debug: verify the graph after every pass (default: ``ACCEL_DEBUG`` env var).
        dump: directory to write the graph after every pass (or ``ACCEL_DUMP``).
        name: model name for reports.
        dynamic_shapes: symbolic dims, as ``torch.export.export(dynamic_shapes=...)`` takes
            them (per input, ``{axis: torch.export.Dim}``), or ``"auto"`` (dim 0 of every
            input, dim 1 of integer inputs). One compile then serves every size in range.
            Without it, the first compile is static and the first call with another shape
            compiles once more with the dims that changed made symbolic.

    Returns:
        A :class:`CompiledModel`, callable like the model, with ``.report`` and ``.graph``.
    """
    return _compile(model, example_inputs, pipeline, target, calibration=calibration,
                    options=options, debug=debug, dump=dump, name=name,
                    dynamic_shapes=dynamic_shapes)


def _compile(model: Any, example_inputs: Any, pipeline: str, target: str, *,
             calibration: Iterable[Any] | None, options: dict[str, Any] | None,
             debug: bool | None, dump: str | os.PathLike | None, name: str | None,
             dynamic_shapes: Any, serve_example: bool = True) -> CompiledModel:
    """:func:`compile`; ``serve_example=False`` (for export) keeps dims of size 0/1 in
    ``dynamic_shapes`` symbolic in the first graph, which then need not accept the example
    itself (it is traced at size 2)."""
    module = as_module(model)
    inputs = check_example_inputs(example_inputs)
    name = name or type(module).__name__
    config = make_config(name=name, pipeline=pipeline, target=target, example_inputs=inputs,
                         calibration=calibration, options=options, debug=debug, dump=dump,
                         dynamic_shapes=dynamic_shapes)
    if _in_training_mode(module):
        warnings.warn(f"accel: {name} is in training mode; accel compiles for inference, so "
                      "call model.eval() first (dropout and BatchNorm statistics differ)",
                      stacklevel=2)
    key = cache.model_fingerprint(module) if cache.enabled() else None
    return compile_captured(lambda args, dynamic: capture(module, args, name, dynamic),
                            inputs, config, cache_key=key, serve_example=serve_example)


def kernels(model: Any, example_inputs: Any, pipeline: str = "default", arch: str = "sm_90a",
            dtype: torch.dtype | str | None = None, *, dump: str | os.PathLike | None = None,
            fp32_precision: str | None = None, progress: bool = False) -> list[Any]:
    """Every Triton kernel the ``cuda`` target would launch for ``model``, compiled ahead of
    time for ``arch`` (``sm_80``, ``sm_90a``) on this machine, GPU or not.

    One :class:`~accel.backends.triton.aot.KernelInfo` per kernel and autotune config:
    registers, spill bytes, stack, shared memory, tensor-core instructions (wgmma, mma),
    FLOPs and bytes from the IR. ``dtype`` (``fp16``, ``bf16``, ``fp32``) casts a copy of
    the model and its float inputs first; ``dump`` writes each kernel's source, PTX and
    SASS; ``fp32_precision`` is the cuda target's option (default: torch's float32 matmul
    precision); ``progress`` prints a line per compile to stderr. See ``accel kernels``.
    """
    from accel.backends.triton import aot

    graph, inputs = kernel_graph(model, example_inputs, pipeline, dtype)
    launches = aot.record(graph, inputs, arch, fp32_precision)
    return aot.compile_launches(launches, arch, dump=dump,
                                progress=aot.print_progress if progress else None)


DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}


def kernel_graph(model: Any, example_inputs: Any, pipeline: str = "default",
                 dtype: torch.dtype | str | None = None
                 ) -> tuple[Graph, tuple[torch.Tensor, ...]]:
    """The optimized graph the ``cuda`` target would lower for ``model`` (cast to ``dtype``
    first, on a copy), and the inputs it runs on."""
    module = as_module(model)
    inputs = check_example_inputs(example_inputs)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise AccelValueError(f"dtype {dtype!r}: use one of fp16, bf16, fp32")
        dtype = DTYPES[dtype]
    if dtype is not None:
        module = copy.deepcopy(module).to(dtype)
        inputs = tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)
    graph = capture(module, inputs, type(module).__name__)
    ctx = PassContext(example_inputs=inputs, target="cuda")
    graph, _ = run_pipeline(graph, list(parse_pipeline(pipeline)), ctx)
    return graph, inputs


def reports() -> list[Report]:
    """Reports of the graphs compiled through ``torch.compile(backend="accel")``, oldest first.

    One per TorchDynamo graph (graph breaks make several), including graphs that ran eagerly
    (with the reason in ``eager_fallbacks``).
    """
    from accel.torch_compile import REPORTS

    return list(REPORTS)


def _in_training_mode(module: torch.nn.Module) -> bool:
    """Whether a module whose behaviour depends on the mode (dropout, BN) is training."""
    mode_dependent = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
    return any(m.training and isinstance(m, mode_dependent) for m in module.modules())
