"""The ONNX lowering registry: IR op name -> function emitting standard ONNX nodes.

Contract for lowering authors
-----------------------------
A lowering lives in a module of ``accel/backends/onnx/lowerings/`` (auto-imported, like
passes: ``core.py`` for core ops, ``quant.py`` for quantized ops, ``tokens.py`` for token
merging...) and is registered with the decorator::

    from accel.backends.onnx.registry import onnx_lowering

    @onnx_lowering("my_op")
    def my_op(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
        y = b.add("Mul", [inputs[0], b.const(np.float32(2.0), "two")])
        return [y]

* ``node`` is the IR node (read ``node.attrs``, ``node.inputs[i].type`` (static shape and
  dtype), ``node.outputs``); ``inputs`` are the ONNX value names of its inputs, ``""`` for
  an absent optional input.
* Return one ONNX value name per ``node.outputs`` entry, in order; the exporter names and
  types them.
* Emit standard ONNX only (default domain, opset ``b.opset`` >= 17; no ``com.microsoft``).
* Builder API (:class:`~accel.backends.onnx.builder.OnnxBuilder`):
  ``b.add(op_type, inputs, n_outputs=1, **attrs) -> str | list[str]`` adds a node (attribute
  values: int, float, str, lists of those, numpy arrays as tensors);
  ``b.const(array, name_hint) -> str`` adds an initializer (numpy array, torch tensor or
  Python scalar/list; keep dtypes explicit); ``b.const_i64(values, hint)`` for shape
  vectors; ``b.onnx_dtype(torch_dtype)`` gives the ONNX element type for ``Cast``;
  ``b.shape_of(name)`` emits ``Shape``.
* Symbolic sizes: a dim of ``node.inputs[i].type.shape`` may be a sympy expression of size
  symbols (``batch``, ``seq``). A shape written as a constant must then be built at run
  time: ``b.dims(shape)`` gives an int64 shape vector (constant when static),
  ``b.reshape_target(shape)`` a Reshape target, ``b.size(dim)`` a ``[1]`` int64 vector of
  one size. Pointwise, reduction and matmul-like ops usually need none of this.
* Raise :class:`accel.errors.ExportError` naming ``node.name`` for attribute values that
  cannot be expressed in ONNX.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from accel.errors import AccelValueError
from accel.ir.ops import check_op_names

if TYPE_CHECKING:
    from accel.backends.onnx.builder import OnnxBuilder
    from accel.ir.graph import Node

OnnxLowering = Callable[["OnnxBuilder", "Node", list[str]], list[str]]
"""``fn(builder, node, input_names) -> output_names``."""

_LOWERINGS: dict[str, OnnxLowering] = {}
_loaded = False


def onnx_lowering(op_name: str) -> Callable[[OnnxLowering], OnnxLowering]:
    """Register the decorated function as the ONNX lowering of IR op ``op_name`` (which must
    be a registered op: a typo fails at import)."""
    check_op_names([op_name], f"ONNX lowering of '{op_name}'")

    def deco(fn: OnnxLowering) -> OnnxLowering:
        if op_name in _LOWERINGS and _LOWERINGS[op_name] is not fn:
            raise AccelValueError(f"op '{op_name}' already has an ONNX lowering "
                                  f"({_LOWERINGS[op_name].__module__})")
        _LOWERINGS[op_name] = fn
        return fn

    return deco


def load_lowerings() -> None:
    """Import every module of ``accel.backends.onnx.lowerings`` (registers their lowerings)."""
    global _loaded
    if _loaded:
        return
    from accel.backends.onnx import lowerings

    for m in sorted(mod.name for mod in pkgutil.iter_modules(lowerings.__path__)):
        if not m.startswith("_"):
            importlib.import_module(f"{lowerings.__name__}.{m}")
    _loaded = True


def get_lowering(op_name: str) -> OnnxLowering | None:
    """The ONNX lowering of ``op_name``, or ``None`` if it has none."""
    load_lowerings()
    return _LOWERINGS.get(op_name)


def has_lowering(op_name: str) -> bool:
    """Whether ``op_name`` has an ONNX lowering."""
    return get_lowering(op_name) is not None


def all_lowerings() -> dict[str, OnnxLowering]:
    """Every registered lowering by op name."""
    load_lowerings()
    return dict(_LOWERINGS)
