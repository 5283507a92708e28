"""The onnxruntime executor: a whole graph as one ONNX InferenceSession on CPU.

:func:`lower_onnxruntime` exports the graph (symbolic dims as dynamic axes: one session
serves every size in range) and opens the session, with graph optimizations enabled and one intra-op
thread per physical core; :class:`OrtExecutor` only runs it.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from accel.backends.onnx.exporter import export_file
from accel.errors import GuardError
from accel.host import HostProfile, host, physical_cores
from accel.ir.graph import Graph


def int8_weights_for(profile: HostProfile) -> str:
    """``s8`` where onnxruntime's u8 x s8 kernel is exact (VNNI, non-x86), else ``u8``."""
    return "s8" if profile.u8s8_exact else "u8"


def lower_onnxruntime(graph: Graph, *, threads: int | None = None, keep_model: bool = False,
                      model_file: Path | None = None) -> OrtExecutor:
    """Export ``graph`` to standard-op ONNX and open an onnxruntime session: one session for
    every size of a graph with symbolic dims (they are the model's dynamic axes).

    Graph optimizations are all enabled; ``threads`` intra-op threads (default: one per
    physical core). ``model_file`` (an ONNX file from an earlier export, e.g. the compile
    cache's) skips the export. The session loads from a file, not from bytes in memory: from
    bytes onnxruntime keeps a second copy of the weights alive. ``keep_model`` keeps the
    exported file (``executor.model_file``, in a temporary directory the caller removes).
    Raises :class:`~accel.errors.ExportError` for a graph with an op that has no ONNX
    lowering.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or physical_cores()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    own = model_file is None
    if own:
        model_file = export_file(graph, int8_weights=int8_weights_for(host()))
    try:
        session = ort.InferenceSession(str(model_file), so, providers=["CPUExecutionProvider"])
    except Exception:
        if own:
            shutil.rmtree(model_file.parent, ignore_errors=True)
        raise
    executor = OrtExecutor(graph, session, so.intra_op_num_threads)
    if keep_model:
        executor.model_file = model_file
    elif own:
        shutil.rmtree(model_file.parent, ignore_errors=True)
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
        self.model_file: Path | None = None
        """The ONNX file the session was loaded from, when lowering was asked to keep it."""

    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Execute on ``inputs`` (CPU tensors in graph input order)."""
        if len(inputs) != len(self.input_names):
            raise GuardError(f"onnxruntime executor of {self.graph.name}: expected "
                             f"{len(self.input_names)} inputs, got {len(inputs)}")
        feeds = {n: np.ascontiguousarray(t.detach().cpu().numpy())
                 for n, t in zip(self.input_names, inputs, strict=True)}
        return [torch.from_numpy(o) for o in self.session.run(self.output_names, feeds)]
