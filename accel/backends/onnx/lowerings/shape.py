"""ONNX lowerings of the data-movement ops; symbolic sizes are read from the inputs' shapes at
run time (:meth:`OnnxBuilder.size`)."""

from __future__ import annotations

import numpy as np
import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.lowerings.core import cast_to
from accel.backends.onnx.registry import onnx_lowering
from accel.errors import ExportError
from accel.ir.graph import Node
from accel.ir.shapes import is_symbolic

_INT64_MAX = int(np.iinfo(np.int64).max)


@onnx_lowering("reshape")
def lower_reshape(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Reshape (one symbolic dim becomes -1; several are computed at run time)."""
    return [b.add("Reshape", [inputs[0], b.reshape_target(node.outputs[0].shape)])]


@onnx_lowering("size_tensor")
def lower_size_tensor(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """The size as a 0-d tensor (computed from the inputs' shapes when symbolic)."""
    a = node.attrs
    scalar = b.add("Squeeze", [b.size(a["value"]), b.const_i64([0], "axis")])
    return [cast_to(b, scalar, torch.int64, a["dtype"])]


@onnx_lowering("arange")
def lower_arange(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Range over int64 bounds (symbolic ones computed at run time), cast to the dtype."""
    a = node.attrs
    scalars = [b.add("Squeeze", [b.size(a[k]), b.const_i64([0], "axis")])
               for k in ("start", "end", "step")]
    return [cast_to(b, b.add("Range", scalars), torch.int64, a["dtype"])]


@onnx_lowering("permute")
def lower_permute(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Transpose."""
    rank = node.inputs[0].type.rank
    return [b.add("Transpose", inputs, perm=[d % rank for d in node.attrs["dims"]])]


@onnx_lowering("expand")
def lower_expand(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Expand to the output shape (symbolic entries read at run time)."""
    return [b.add("Expand", [inputs[0], b.dims(node.outputs[0].shape)])]


@onnx_lowering("slice")
def lower_slice(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Slice along one dim (an end at the dim's size stays open-ended; symbolic bounds are
    computed at run time)."""
    a, x = node.attrs, node.inputs[0]
    dim = a["dim"] % x.type.rank
    size = x.shape[dim]
    start, end = a["start"], a["end"]
    if is_symbolic((start, end, size)):
        if end == size:
            end = _INT64_MAX
        bounds = [b.size(start), b.size(end)]
    else:
        end = min(end, size) if end >= 0 else end
        bounds = [b.const_i64([start], "slice"), b.const_i64([end], "slice")]
    return [b.add("Slice", [inputs[0], *bounds, b.const_i64([dim], "slice"),
                            b.const_i64([a["step"]], "slice")])]


@onnx_lowering("select")
def lower_select(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Gather with a scalar index (drops the dim; a symbolic index is computed)."""
    i = node.attrs["index"]
    index = (b.add("Squeeze", [b.size(i), b.const_i64([0], "axis")]) if is_symbolic(i)
             else b.const(np.asarray(i, dtype=np.int64), "index"))
    return [b.add("Gather", [inputs[0], index], axis=node.attrs["dim"])]


@onnx_lowering("concat")
def lower_concat(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Concat (inputs cast to the output dtype)."""
    dt = node.outputs[0].dtype
    parts = [cast_to(b, n, v.dtype, dt) for n, v in zip(inputs, node.inputs, strict=True)]
    return [b.add("Concat", parts, axis=node.attrs["dim"])]


@onnx_lowering("pad")
def lower_pad(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Constant Pad (F.pad's last-dim-first pairs reordered; negative pads crop)."""
    x = node.inputs[0]
    rank, pads = x.type.rank, list(node.attrs["pads"])
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pads) // 2):
        begins[rank - 1 - i], ends[rank - 1 - i] = pads[2 * i], pads[2 * i + 1]
    value = b.scalar(node.attrs["value"], x.dtype, "pad_value")
    return [b.add("Pad", [inputs[0], b.const_i64(begins + ends, "pads"), value], mode="constant")]


@onnx_lowering("index_select")
def lower_index_select(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Gather along dim (nothing for a constant identity index such as arange(n))."""
    x, dim = node.inputs[0], node.attrs["dim"]
    index = b.constant(node.inputs[1])
    size = x.shape[dim]
    if (index is not None and isinstance(size, int) and index.numel() == size
            and torch.equal(index, torch.arange(size))):
        return [inputs[0]]
    return [b.add("Gather", inputs, axis=node.attrs["dim"])]


@onnx_lowering("gather")
def lower_gather(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """GatherElements along dim."""
    return [b.add("GatherElements", inputs, axis=node.attrs["dim"])]


_SCATTER_REDUCTION = {"none": "none", "sum": "add", "prod": "mul", "amax": "max", "amin": "min"}


@onnx_lowering("scatter")
def lower_scatter(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """ScatterElements along dim (max/min reductions need opset 18)."""
    reduction = _SCATTER_REDUCTION[node.attrs["reduce"]]
    if reduction in ("max", "min") and b.opset < 18:
        raise ExportError(f"node {node.name} (scatter, reduce={node.attrs['reduce']}): "
                          "ScatterElements reduces by max/min from opset 18; export with "
                          "opset=18")
    x, dt = node.inputs[0], node.inputs[0].dtype
    src = inputs[2] if node.inputs[2].dtype == dt else b.add("Cast", [inputs[2]],
                                                              to=b.onnx_dtype(dt))
    index = inputs[1] if node.inputs[1].dtype == torch.int64 else b.add(
        "Cast", [inputs[1]], to=b.onnx_dtype(torch.int64))
    return [b.add("ScatterElements", [inputs[0], index, src], axis=node.attrs["dim"] % max(
        x.type.rank, 1), reduction=reduction)]


@onnx_lowering("index_put")
def lower_index_put(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """ScatterND: the index tensors broadcast and stacked on a last axis (negative entries
    counted from the end), the values expanded to the indexed slices' shape."""
    x, values, *indices = node.inputs
    k = len(indices)
    shapes = [tuple(v.shape) for v in indices]
    if is_symbolic(tuple(x.shape)) or any(is_symbolic(s) for s in shapes):
        raise ExportError(f"node {node.name} (index_put): symbolic shapes")
    bshape = tuple(torch.broadcast_shapes(*shapes))
    i64 = b.onnx_dtype(torch.int64)
    parts = []
    for j, (name, v) in enumerate(zip(inputs[2:], indices, strict=True)):
        idx = name if v.dtype == torch.int64 else b.add("Cast", [name], to=i64)
        size = b.const_i64([int(x.shape[j])], "size")
        neg = b.add("Less", [idx, b.const_i64([0], "zero")])
        idx = b.add("Where", [neg, b.add("Add", [idx, size]), idx])
        idx = b.add("Expand", [idx, b.const_i64(list(bshape), "shape")])
        parts.append(b.add("Unsqueeze", [idx, b.const_i64([-1], "axis")]))
    stacked = parts[0] if k == 1 else b.add("Concat", parts, axis=-1)
    upd = inputs[1] if values.dtype == x.dtype else b.add("Cast", [inputs[1]],
                                                          to=b.onnx_dtype(x.dtype))
    upd = b.add("Expand", [upd, b.const_i64(list(bshape) + [int(d) for d in x.shape[k:]],
                                            "shape")])
    reduction = "add" if node.attrs["accumulate"] else "none"
    return [b.add("ScatterND", [inputs[0], stacked, upd], reduction=reduction)]
