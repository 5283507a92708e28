"""ONNX lowerings of the data-movement ops, batch-agnostic where the batch dim is involved."""

from __future__ import annotations

import numpy as np
import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.lowerings.core import cast_to
from accel.backends.onnx.registry import onnx_lowering
from accel.ir.graph import Node

_INT64_MAX = int(np.iinfo(np.int64).max)


@onnx_lowering("reshape")
def lower_reshape(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Reshape; the dim holding the batch becomes -1 so any batch size fits."""
    shape = list(node.outputs[0].shape)
    axis = b.batch_axis(node.outputs[0])
    if axis is not None and b.batch_axis(node.inputs[0]) is not None:
        shape[axis] = -1
    return [b.add("Reshape", [inputs[0], b.const_i64(shape, "shape")])]


@onnx_lowering("permute")
def lower_permute(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Transpose."""
    rank = node.inputs[0].type.rank
    return [b.add("Transpose", inputs, perm=[d % rank for d in node.attrs["dims"]])]


@onnx_lowering("expand")
def lower_expand(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Expand to the output shape, the batch entry read at run time."""
    out = node.outputs[0]
    shape = b.dim_vector(out.shape, b.batch_axis(out))
    return [b.add("Expand", [inputs[0], shape])]


@onnx_lowering("slice")
def lower_slice(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Slice along one dim (a full-length end on the batch dim stays open-ended)."""
    a, x = node.attrs, node.inputs[0]
    dim = a["dim"] % x.type.rank
    size = x.shape[dim]
    start, end = a["start"], a["end"]
    if end >= size and b.batch_axis(x) == dim:
        end = _INT64_MAX
    else:
        end = min(end, size) if end >= 0 else end
    consts = [b.const_i64([v], "slice") for v in (start, end, dim, a["step"])]
    return [b.add("Slice", [inputs[0], *consts])]


@onnx_lowering("select")
def lower_select(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Gather with a scalar index (drops the dim)."""
    index = b.const(np.asarray(node.attrs["index"], dtype=np.int64), "index")
    return [b.add("Gather", [inputs[0], index], axis=node.attrs["dim"])]


@onnx_lowering("concat")
def lower_concat(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Concat (inputs cast to the output dtype; batch-free inputs broadcast to the batch)."""
    out = node.outputs[0]
    dt, axis, dim = out.dtype, b.batch_axis(out), node.attrs["dim"] % out.type.rank
    parts = [cast_to(b, n, v.dtype, dt) for n, v in zip(inputs, node.inputs, strict=True)]
    if axis is not None and axis != dim:  # e.g. a (1, 1, D) cls token exported at batch 1
        ones = [1] * out.type.rank
        parts = [p if b.batch_axis(v) is not None else
                 b.add("Expand", [p, b.dim_vector(ones, axis)])
                 for p, v in zip(parts, node.inputs, strict=True)]
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
    if index is not None and index.numel() == size and torch.equal(index, torch.arange(size)):
        return [inputs[0]]
    return [b.add("Gather", inputs, axis=node.attrs["dim"])]


@onnx_lowering("gather")
def lower_gather(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """GatherElements along dim."""
    return [b.add("GatherElements", inputs, axis=node.attrs["dim"])]
