"""ONNX export of the optimized IR: standard-op ONNX models for deployment and onnxruntime.

See :mod:`accel.backends.onnx.registry` for the lowering contract (how an op gets its ONNX
lowering) and :mod:`accel.backends.onnx.exporter` for graph-level export.
"""

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.registry import get_lowering, has_lowering, onnx_lowering

__all__ = ["OnnxBuilder", "get_lowering", "has_lowering", "onnx_lowering"]
