"""Tensor types: the shape, dtype and device every IR value carries.

A dim is an ``int`` or a symbolic expression of size symbols (:mod:`accel.ir.shapes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from accel.ir.shapes import Dim, canon_shape, format_dim, is_symbolic

_SHORT_DTYPE = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.float64: "f64",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.int16: "i16",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.bool: "b8",
}


@dataclass(frozen=True)
class TensorType:
    """The type of a tensor value: shape, dtype and device."""

    shape: tuple[Dim, ...]
    """Size of each dimension: an ``int``, or a sympy expression of size symbols."""
    dtype: torch.dtype
    """Element type, a ``torch.dtype``."""
    device: str = "cpu"
    """Device type the value lives on: ``"cpu"``, ``"cuda"``, ``"meta"``."""

    @staticmethod
    def of(t: torch.Tensor) -> TensorType:
        """The type of a concrete tensor."""
        return TensorType(tuple(int(s) for s in t.shape), t.dtype, t.device.type)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", canon_shape(self.shape))

    @property
    def is_static(self) -> bool:
        """Whether every dim is an ``int``."""
        return not is_symbolic(self.shape)

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def numel(self) -> Dim:
        """Number of elements (an expression for a symbolic shape)."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def nbytes(self) -> Dim:
        """Bytes of the whole tensor (an expression for a symbolic shape)."""
        return self.numel * self.itemsize

    @property
    def is_floating(self) -> bool:
        """Whether the dtype is a floating-point type."""
        return self.dtype.is_floating_point

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        """This type with another shape."""
        return TensorType(tuple(shape), self.dtype, self.device)

    def with_dtype(self, dtype: torch.dtype) -> TensorType:
        """This type with another dtype."""
        return TensorType(self.shape, dtype, self.device)

    def meta(self) -> torch.Tensor:
        """An empty meta tensor of this (static) type, for shape inference."""
        return torch.empty(self.shape, dtype=self.dtype, device="meta")  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{short_dtype(self.dtype)}[{','.join(format_dim(d) for d in self.shape)}]"


def short_dtype(dtype: torch.dtype) -> str:
    """The short printed name of a dtype (``f32``, ``i64``...)."""
    return _SHORT_DTYPE.get(dtype, str(dtype).removeprefix("torch."))
