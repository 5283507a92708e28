"""OnnxBuilder: accumulates ONNX nodes and initializers while lowering an IR graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from accel.errors import ExportError

_ONNX_DTYPE = {
    torch.float32: onnx.TensorProto.FLOAT,
    torch.float16: onnx.TensorProto.FLOAT16,
    torch.bfloat16: onnx.TensorProto.BFLOAT16,
    torch.float64: onnx.TensorProto.DOUBLE,
    torch.int64: onnx.TensorProto.INT64,
    torch.int32: onnx.TensorProto.INT32,
    torch.int16: onnx.TensorProto.INT16,
    torch.int8: onnx.TensorProto.INT8,
    torch.uint8: onnx.TensorProto.UINT8,
    torch.bool: onnx.TensorProto.BOOL,
}


def onnx_dtype(dtype: torch.dtype) -> int:
    """The ONNX element type (``TensorProto.FLOAT``...) of a torch dtype."""
    try:
        return _ONNX_DTYPE[dtype]
    except KeyError:
        raise ExportError(f"dtype {dtype} has no ONNX equivalent") from None


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a torch tensor, numpy array or Python scalar/list."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            raise ExportError("bfloat16 constants are not supported by the ONNX exporter; "
                              "cast the model to float32 first")
        return t.contiguous().numpy()
    return np.asarray(value)


class OnnxBuilder:
    """Collects nodes, initializers and fresh names for one ONNX graph (see registry docs)."""

    def __init__(self, opset: int = 17, dynamic_batch: bool = True) -> None:
        self.opset = opset
        """ONNX opset of the default domain."""
        self.dynamic_batch = dynamic_batch
        """Whether dim 0 of inputs/outputs is the symbolic ``batch`` dim."""
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._batch_axes: dict[Any, int | None] = {}
        self._batch_source: tuple[str, int] | None = None
        self._batch_vector: str | None = None
        self._const_cache: dict[tuple, str] = {}
        self.constants: dict[Any, torch.Tensor] = {}
        """IR constants of the graph being exported (see :meth:`constant`)."""
        self.current_node: str = ""
        """Name of the IR node being lowered (prefix of emitted ONNX node names)."""

    # ---- names ----------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A value/node name not used yet, derived from ``hint``."""
        base = hint or "v"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        """Mark ``name`` as taken (graph inputs)."""
        self._names.add(name)

    # ---- emitting ---------------------------------------------------------------------------
    def add(self, op_type: str, inputs: Sequence[str], n_outputs: int = 1,
            **attrs: Any) -> str | list[str]:
        """Add an ONNX node; returns its output name (a list if ``n_outputs > 1``)."""
        prefix = self.current_node or op_type.lower()
        outs = [self.fresh(f"{prefix}_{op_type.lower()}") for _ in range(n_outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"n_{outs[0]}"),
                                **attrs)
        self.nodes.append(node)
        return outs[0] if n_outputs == 1 else outs

    def const(self, value: Any, name_hint: str = "const") -> str:
        """An initializer holding ``value``; returns its name."""
        arr = to_numpy(value)
        small = arr.size <= 16
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if small else None
        if key is not None and key in self._const_cache:
            return self._const_cache[key]
        name = self.fresh(name_hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._const_cache[key] = name
        return name

    def const_i64(self, values: Sequence[int], name_hint: str = "shape") -> str:
        """A 1-d int64 initializer (shape vectors, axes, starts/ends)."""
        return self.const(np.asarray(list(values), dtype=np.int64), name_hint)

    def scalar(self, value: float | int | bool, dtype: torch.dtype, name_hint: str = "k") -> str:
        """A 0-d initializer of ``dtype``."""
        return self.const(torch.tensor(value, dtype=dtype), name_hint)

    def onnx_dtype(self, dtype: torch.dtype) -> int:
        """The ONNX element type of a torch dtype."""
        return onnx_dtype(dtype)

    def constant(self, value: Any) -> torch.Tensor | None:
        """The tensor of IR ``value`` if it is a graph constant (to pre-transform weights)."""
        return self.constants.get(value) if value is not None else None

    def shape_of(self, name: str, start: int | None = None, end: int | None = None) -> str:
        """``Shape(name)[start:end]`` as an int64 vector."""
        return self.add("Shape", [name], start=start, end=end)

    # ---- dynamic batch -------------------------------------------------------------------------
    def set_batch_axis(self, value: Any, axis: int | None) -> None:
        """Record which dim of IR ``value`` is the batch dim (set by the exporter)."""
        self._batch_axes[value] = axis

    def batch_axis(self, value: Any) -> int | None:
        """The batch dim of IR ``value`` (``None``: none, or static export)."""
        if not self.dynamic_batch:
            return None
        return self._batch_axes.get(value)

    def set_batch_source(self, name: str, axis: int) -> None:
        """The ONNX value (a graph input) whose dim ``axis`` gives the batch size at run time."""
        if self._batch_source is None:
            self._batch_source = (name, axis)

    def batch_size_vector(self) -> str:
        """An int64 vector ``[batch]`` read from an input's shape at run time."""
        if self._batch_source is None:
            raise ExportError("no graph input carries the batch dim; export with "
                              "dynamic_batch=False")
        if self._batch_vector is None:
            saved, self.current_node = self.current_node, "batch"
            name, axis = self._batch_source
            self._batch_vector = self.shape_of(name, axis, axis + 1)
            self.current_node = saved
        return self._batch_vector

    def dim_vector(self, shape: Sequence[int], batch_axis: int | None,
                   hint: str = "shape") -> str:
        """An int64 shape vector equal to ``shape`` except the batch entry, read at run time."""
        if batch_axis is None or not self.dynamic_batch:
            return self.const_i64(shape, hint)
        parts = []
        if batch_axis > 0:
            parts.append(self.const_i64(shape[:batch_axis], hint))
        parts.append(self.batch_size_vector())
        if batch_axis + 1 < len(shape):
            parts.append(self.const_i64(shape[batch_axis + 1:], hint))
        return parts[0] if len(parts) == 1 else self.add("Concat", parts, axis=0)
