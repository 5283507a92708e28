"""Tensor types: the static shape, dtype and device every IR value carries."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

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
    """The static type of a tensor value: shape, dtype and device."""

    shape: tuple[int, ...]
    """Size of each dimension; static (a new shape recompiles)."""
    dtype: torch.dtype
    """Element type, a ``torch.dtype``."""
    device: str = "cpu"
    """Device type the value lives on: ``"cpu"``, ``"cuda"``, ``"meta"``."""

    @staticmethod
    def of(t: torch.Tensor) -> TensorType:
        """The type of a concrete tensor."""
        return TensorType(tuple(int(s) for s in t.shape), t.dtype, t.device.type)

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def nbytes(self) -> int:
        """Bytes of the whole tensor."""
        return self.numel * self.itemsize

    @property
    def is_floating(self) -> bool:
        """Whether the dtype is a floating-point type."""
        return self.dtype.is_floating_point

    def with_shape(self, shape: tuple[int, ...]) -> TensorType:
        """This type with another shape."""
        return TensorType(tuple(shape), self.dtype, self.device)

    def with_dtype(self, dtype: torch.dtype) -> TensorType:
        """This type with another dtype."""
        return TensorType(self.shape, dtype, self.device)

    def meta(self) -> torch.Tensor:
        """An empty meta tensor of this type, for shape inference."""
        return torch.empty(self.shape, dtype=self.dtype, device="meta")

    def __str__(self) -> str:
        return f"{short_dtype(self.dtype)}[{','.join(map(str, self.shape))}]"


def short_dtype(dtype: torch.dtype) -> str:
    """The short printed name of a dtype (``f32``, ``i64``...)."""
    return _SHORT_DTYPE.get(dtype, str(dtype).removeprefix("torch."))
