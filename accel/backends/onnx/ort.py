"""The onnxruntime executor: a whole graph as one ONNX InferenceSession on CPU.

:func:`lower_onnxruntime` exports the graph (symbolic dims as dynamic axes: one session
serves every size in range) and opens the session, with graph optimizations enabled and one intra-op
thread per physical core; :class:`OrtExecutor` only runs it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import torch

from accel.backends.onnx.exporter import graph_to_onnx, save_model
from accel.errors import GuardError
from accel.host import HostProfile, host, physical_cores
from accel.ir.graph import Graph

_LARGE_MODEL_BYTES = 1 << 30


def int8_weights_for(profile: HostProfile) -> str:
    """``s8`` where onnxruntime's u8 x s8 kernel is exact (VNNI, non-x86), else ``u8``."""
    return "s8" if profile.u8s8_exact else "u8"


def lower_onnxruntime(graph: Graph, *, threads: int | None = None, keep_model: bool = False,
                      model_bytes: bytes | None = None) -> OrtExecutor:
    """Export ``graph`` to standard-op ONNX and open an onnxruntime session: one session for
    every size of a graph with symbolic dims (they are the model's dynamic axes).

    Graph optimizations are all enabled; ``threads`` intra-op threads (default: one per
    physical core). ``model_bytes`` (a serialized model from an earlier export, e.g. the
    compile cache) skips the export; ``keep_model`` keeps the serialized model on the
    executor as ``model_bytes``. Raises :class:`~accel.errors.ExportError` for a graph with an
    op that has no ONNX lowering.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or physical_cores()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if model_bytes is None:
        model = graph_to_onnx(graph, int8_weights=int8_weights_for(host()))
        if model.ByteSize() >= _LARGE_MODEL_BYTES:
            # protobuf cannot hold > 2 GB in memory: go through a file with external data
            with tempfile.TemporaryDirectory() as d:
                path = save_model(model, os.path.join(d, "model.onnx"))
                session = ort.InferenceSession(str(path), so, providers=providers)
            return OrtExecutor(graph, session, so.intra_op_num_threads)
        model_bytes = model.SerializeToString()
        del model
    session = ort.InferenceSession(model_bytes, so, providers=providers)
    executor = OrtExecutor(graph, session, so.intra_op_num_threads)
    if keep_model:
        executor.model_bytes = model_bytes
    return executor


class OrtExecutor:
    """Runs an IR graph as one onnxruntime ``InferenceSession`` (CPU); made by
    :func:`lower_onnxruntime`."""

    name = "onnxruntime"

    def __init__(self, graph: Graph, session: ort.InferenceSession, threads: int) -> None:
        self.graph = graph
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.threads = threads
        """Intra-op threads of the session."""
        self.model_bytes: bytes | None = None
        """The serialized ONNX model, when lowering was asked to keep it."""

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs`` (CPU tensors in graph input order)."""
        if len(inputs) != len(self.input_names):
            raise GuardError(f"onnxruntime executor of {self.graph.name}: expected "
                             f"{len(self.input_names)} inputs, got {len(inputs)}")
        feeds = {n: np.ascontiguousarray(t.detach().cpu().numpy())
                 for n, t in zip(self.input_names, inputs, strict=True)}
        return [torch.from_numpy(o) for o in self.session.run(self.output_names, feeds)]
