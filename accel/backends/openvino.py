"""The OpenVINO executor: a whole graph as one OpenVINO compiled model on the CPU.

The graph goes to OpenVINO through the same standard-op ONNX accel exports for
onnxruntime (symbolic dims as dynamic axes, int8 as the host's integer-matmul form), read
by OpenVINO's ONNX frontend. Inference precision is pinned to f32: on hosts with bf16
(AVX-512 BF16, AMX) OpenVINO would otherwise run fp32 models in bf16, a silent loss accel's
lossless pipelines must not have. OpenVINO is an optional extra: ``pip install
accel[openvino]``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accel.backends.onnx.exporter import export_file
from accel.errors import AccelError, ExportError, GuardError
from accel.host import host, physical_cores
from accel.ir.graph import Graph


def available() -> bool:
    """Whether OpenVINO can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str | None:
    """OpenVINO's version, or ``None`` when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


def cpu_config(threads: int | None = None) -> dict[str, object]:
    """The OpenVINO CPU settings accel compiles with: latency-oriented, one stream, fp32
    (no bf16 down-conversion on hosts that have it), ``threads`` inference threads (default:
    one per physical core). Benchmarks that run OpenVINO alone use the same."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or physical_cores(),
            "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}


def lower_openvino(graph: Graph, *, threads: int | None = None, keep_model: bool = False,
                   model_file: Path | None = None) -> OpenVinoExecutor:
    """Export ``graph`` to ONNX (or take ``model_file`` from an earlier export) and compile
    it with OpenVINO for the CPU, latency-oriented, ``threads`` inference threads (default:
    one per physical core). ``keep_model`` keeps the exported file
    (``executor.model_file``, in a temporary directory the caller removes).

    Raises :class:`~accel.errors.ExportError` when OpenVINO is not installed, a node has no
    ONNX lowering, or OpenVINO cannot read or compile the model.
    """
    try:
        import openvino as ov
    except ImportError as e:
        raise ExportError("the OpenVINO executor needs OpenVINO: pip install "
                          "'accel[openvino]' (or pip install openvino)") from e
    from accel.backends.onnx.ort import int8_weights_for

    own = model_file is None
    if own:
        model_file = export_file(graph, int8_weights=int8_weights_for(host()))
    threads = threads or physical_cores()
    core = ov.Core()
    try:
        model = core.read_model(str(model_file))
        compiled = core.compile_model(model, "CPU", cpu_config(threads))
    except RuntimeError as e:  # OpenVINO reports unsupported ops as RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"OpenVINO cannot compile graph {graph.name}: {first}") from e
    finally:
        if own and not keep_model:
            shutil.rmtree(model_file.parent, ignore_errors=True)
    del model
    executor = OpenVinoExecutor(graph, compiled, threads)
    if keep_model:
        executor.model_file = model_file
    return executor


class OpenVinoExecutor:
    """Runs an IR graph as one OpenVINO ``CompiledModel`` with one infer request (CPU);
    made by :func:`lower_openvino`."""

    name = "openvino"

    def __init__(self, graph: Graph, compiled: Any, threads: int) -> None:
        self.graph = graph
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.n_inputs = len(compiled.inputs)
        self.threads = threads
        """Inference threads."""
        self.model_file: Path | None = None
        """The ONNX file the model was read from, when lowering was asked to keep it."""

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs`` (CPU tensors in graph input order)."""
        if len(inputs) != self.n_inputs:
            raise GuardError(f"OpenVINO executor of {self.graph.name}: expected "
                             f"{self.n_inputs} inputs, got {len(inputs)}")
        feeds = [np.ascontiguousarray(t.detach().cpu().numpy()) for t in inputs]
        try:
            self.request.infer(feeds)
        except RuntimeError as e:
            raise AccelError(f"OpenVINO executor of {self.graph.name} failed: "
                             f"{str(e).strip().splitlines()[0]}") from e
        n = len(self.compiled.outputs)
        return [torch.from_numpy(self.request.get_output_tensor(i).data.copy())
                for i in range(n)]
