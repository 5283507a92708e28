"""ONNX lowerings of the data-dependent ops as standard ops: NonZero (the coordinates of
``nonzero``, the real tokens' offsets: a dynamic axis), Gather (pack) and ScatterND into
zeros (unpack)."""

from __future__ import annotations

import onnx

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.registry import onnx_lowering
from accel.ir.graph import Node


@onnx_lowering("token_offsets")
def lower_token_offsets(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """NonZero of the flattened mask: int64 [T]."""
    flat = b.add("Reshape", [inputs[0], b.const_i64([-1])])
    real = b.add("Cast", [flat], to=onnx.TensorProto.BOOL)
    return [b.add("Reshape", [b.add("NonZero", [real]), b.const_i64([-1])])]


@onnx_lowering("nonzero")
def lower_nonzero(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """NonZero [rank, N], transposed to [N, rank]; a 0-d input as a 1-element vector, whose
    [N, 1] coordinates are cut to [N, 0]."""
    x = b.add("Cast", [inputs[0]], to=onnx.TensorProto.BOOL)
    if node.inputs[0].type.rank == 0:
        flat = b.add("Reshape", [x, b.const_i64([1])])
        rows = b.add("Transpose", [b.add("NonZero", [flat])], perm=[1, 0])
        return [b.add("Slice", [rows, b.const_i64([0]), b.const_i64([0]), b.const_i64([1])])]
    return [b.add("Transpose", [b.add("NonZero", [x])], perm=[1, 0])]


def _flat_rows(b: OnnxBuilder, node: Node, x: str) -> str:
    """x [B, S, *rest] as [B*S, *rest]."""
    rest = node.inputs[0].shape[2:]
    return b.add("Reshape", [x, b.reshape_target((-1, *rest)) if all(
        isinstance(d, int) for d in rest) else b.dims((-1, *rest))])


@onnx_lowering("pack_tokens")
def lower_pack_tokens(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Gather the rows at the offsets from x flattened to [B*S, ...]."""
    return [b.add("Gather", [_flat_rows(b, node, inputs[0]), inputs[1]], axis=0)]


@onnx_lowering("unpack_tokens")
def lower_unpack_tokens(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """ScatterND of the packed rows into zeros [B*S, ...], reshaped to [B, S, ...]."""
    packed, offsets, like = inputs
    out_shape = node.outputs[0].shape
    b_dim, s_dim, rest = out_shape[0], out_shape[1], out_shape[2:]
    flat_shape = b.dims((b_dim * s_dim, *rest), "flat_shape")
    zeros = b.add("ConstantOfShape", [flat_shape], value=onnx.helper.make_tensor(
        "zero", b.onnx_dtype(node.outputs[0].dtype), [1], [0]))
    index = b.add("Unsqueeze", [offsets, b.const_i64([1])])
    scattered = b.add("ScatterND", [zeros, index, packed])
    return [b.add("Reshape", [scattered, b.dims(out_shape, "unpacked_shape")])]
