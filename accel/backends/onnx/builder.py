"""OnnxBuilder: accumulates ONNX nodes and initializers while lowering an IR graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import sympy
import torch
from onnx import helper, numpy_helper

from accel.errors import ExportError
from accel.ir.shapes import is_symbolic

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

    def __init__(self, opset: int = 18, int8_weights: str = "u8") -> None:
        self.opset = opset
        """ONNX opset of the default domain."""
        if int8_weights not in ("s8", "u8"):
            raise ExportError(f"int8_weights={int8_weights!r}: use 's8' (fastest, exact with "
                              "VNNI) or 'u8' (exact on every x86 host)")
        self.int8_weights = int8_weights
        """How int8 weights are stored for integer matmuls (see lowerings/quant.py)."""
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._sources: dict[str, tuple[str, int]] = {}
        self._counts: dict[str, str] = {}
        self._sizes: dict[Any, str] = {}
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

    # ---- symbolic sizes -------------------------------------------------------------------
    def set_symbol_source(self, name: str, value: str, axis: int) -> None:
        """The ONNX value (a graph input) whose dim ``axis`` gives size symbol ``name``."""
        self._sources.setdefault(name, (value, axis))

    def set_count_source(self, name: str, value: str) -> None:
        """The ONNX value (a graph input, or a value the model computes, once lowered) whose
        number of nonzero entries is size symbol ``name`` (a counted symbol, such as the real
        tokens of a padding mask or the entries ``nonzero`` finds)."""
        self._counts.setdefault(name, value)

    def size(self, dim: Any) -> str:
        """An int64 ``[1]`` vector holding ``dim``: a constant for an int, read from an
        input's shape (and computed, for an expression) at run time for a symbolic dim."""
        if isinstance(dim, int):
            return self.const_i64([dim], "size")
        hit = self._sizes.get(dim)
        if hit is None:
            saved, self.current_node = self.current_node, "size"
            try:
                hit = self._sizes[dim] = self._size_expr(dim)
            finally:
                self.current_node = saved
        return hit

    def _size_expr(self, e: sympy.Expr) -> str:
        from torch.utils._sympy.functions import CeilDiv, FloorDiv, Mod, PythonMod

        if e.is_Integer:
            return self.const_i64([int(e)], "size")
        if e.is_Symbol:
            if e.name in self._counts and e.name not in self._sources:
                nonzero = self.add("Cast", [self._counts[e.name]], to=onnx.TensorProto.BOOL)
                ones = self.add("Cast", [nonzero], to=onnx.TensorProto.INT64)
                flat = self.add("Reshape", [ones, self.const_i64([-1])])
                return self.add("ReduceSum", [flat, self.const_i64([0])], keepdims=1)
            if e.name not in self._sources:
                raise ExportError(f"size symbol {e.name} is not a dim of any graph input, so "
                                  "the exported model cannot compute it")
            value, axis = self._sources[e.name]
            return self.shape_of(value, axis, axis + 1)
        binary = {sympy.Add: "Add", sympy.Mul: "Mul", sympy.Max: "Max", sympy.Min: "Min"}
        for kind, op in binary.items():
            if isinstance(e, kind):
                parts = [self.size(a) for a in e.args]
                out = parts[0]
                for p in parts[1:]:
                    out = self.add(op, [out, p])
                return out
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) > 0:
            base = self.size(e.base)
            out = base
            for _ in range(int(e.exp) - 1):
                out = self.add("Mul", [out, base])
            return out
        if isinstance(e, FloorDiv):  # sizes are non-negative: integer Div floors
            return self.add("Div", [self.size(e.args[0]), self.size(e.args[1])])
        if isinstance(e, CeilDiv):
            a, d = self.size(e.args[0]), self.size(e.args[1])
            return self.add("Div", [self.add("Sub", [self.add("Add", [a, d]),
                                                     self.const_i64([1], "one")]), d])
        if isinstance(e, Mod | PythonMod):
            return self.add("Mod", [self.size(e.args[0]), self.size(e.args[1])])
        raise ExportError(f"size {e} cannot be expressed with ONNX ops")

    def dims(self, shape: Sequence[Any], hint: str = "shape") -> str:
        """An int64 shape vector for ``shape``: a constant when static, else built from the
        symbolic sizes at run time."""
        if not is_symbolic(tuple(shape)):
            return self.const_i64(list(shape), hint)
        return self.add("Concat", [self.size(d) for d in shape], axis=0)

    def reshape_target(self, shape: Sequence[Any]) -> str:
        """A Reshape target for ``shape``: at most one symbolic dim becomes -1 (no size
        arithmetic), several are computed at run time."""
        symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if len(symbolic) <= 1:
            return self.const_i64([-1 if i in symbolic else d for i, d in enumerate(shape)])
        return self.dims(shape)
