"""accel: a compiler for PyTorch models.

    compiled = accel.compile(model, (x,))                      # default lossless pipeline
    compiled = accel.compile(model, (x,), pipeline="default,fold-bn", target="cpu")
    model = torch.compile(model, backend="accel")              # as a TorchDynamo backend
"""

from accel import debug as debug
from accel.api import compile  # noqa: A004
from accel.api import kernels as kernels
from accel.api import reports as reports
from accel.errors import (
    AccelError,
    AccelTypeError,
    AccelValueError,
    CaptureError,
    ExportError,
    GraphError,
    GuardError,
    PassError,
)
from accel.export import export_onnx as export_onnx
from accel.ir import Graph
from accel.report import PassRecord, Report
from accel.runtime import CompiledModel

__version__ = "0.1.0"

__all__ = [
    "AccelError", "AccelTypeError", "AccelValueError", "CaptureError", "CompiledModel",
    "ExportError", "Graph", "GraphError", "GuardError", "PassError", "PassRecord", "Report",
    "compile", "debug", "export_onnx", "kernels", "reports",
]
