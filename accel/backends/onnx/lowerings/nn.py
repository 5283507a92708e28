"""ONNX lowerings of the compute ops: linear, matmul, conv, attention, pools, embedding."""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.lowerings.core import cast_to, reduce, safe_softmax_rows
from accel.backends.onnx.registry import onnx_lowering
from accel.errors import ExportError
from accel.ir.graph import Node
from accel.ir.shapes import is_symbolic


def _transposed_weight(b: OnnxBuilder, node: Node, name: str) -> str:
    """weight.T: a pre-transposed initializer when constant, else a Transpose node."""
    w = b.constant(node.inputs[1])
    if w is not None:
        return b.const(w.t().contiguous(), f"{node.name}_weight_t")
    return b.add("Transpose", [name], perm=[1, 0])


@onnx_lowering("linear")
def lower_linear(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Gemm for float inputs (higher ranks flattened to 2-d and back, so the bias add stays
    fused in the Gemm), MatMul(+Add) for integers (onnxruntime has no integer Gemm)."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] else ""
    x_val, out = node.inputs[0], node.outputs[0]
    if x_val.dtype.is_floating_point:
        if x_val.type.rank == 2:
            return [b.add("Gemm", [x, w, bias] if bias else [x, w], transB=1)]
        if x_val.type.rank > 2:
            flat = b.add("Reshape", [x, b.const_i64([-1, x_val.shape[-1]], "flat")])
            y = b.add("Gemm", [flat, w, bias] if bias else [flat, w], transB=1)
            return [b.add("Reshape", [y, b.reshape_target(out.shape)])]
    y = b.add("MatMul", [x, _transposed_weight(b, node, w)])
    return [b.add("Add", [y, bias]) if bias else y]


@onnx_lowering("matmul")
def lower_matmul(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """MatMul (numpy broadcasting semantics, like torch.matmul)."""
    return [b.add("MatMul", inputs)]


@onnx_lowering("conv")
def lower_conv(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Conv with symmetric padding."""
    a = node.attrs
    pads = list(a["padding"])
    return [b.add("Conv", [i for i in inputs if i], strides=list(a["stride"]),
                  pads=pads + pads, dilations=list(a["dilation"]), group=a["groups"],
                  kernel_shape=list(node.inputs[1].shape[2:]))]


@onnx_lowering("attention")
def lower_attention(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """softmax(q * scale @ k^T + bias [+ causal mask]) @ v from standard ops."""
    q, k, v = inputs[:3]
    qt, kt = node.inputs[0], node.inputs[1]
    dt = qt.dtype
    scale = node.attrs["scale"]
    scale = 1.0 / math.sqrt(qt.shape[-1]) if scale is None else scale
    rank = kt.type.rank
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    k_t = b.add("Transpose", [k], perm=perm)
    scores = b.add("MatMul", [b.add("Mul", [q, b.scalar(scale, dt, "scale")]), k_t])
    bias = inputs[3] if len(inputs) > 3 and inputs[3] else ""
    if bias:
        if node.inputs[3].dtype == torch.bool:
            bias = b.add("Where", [bias, b.scalar(0.0, dt, "zero"),
                                   b.scalar(float("-inf"), dt, "neg_inf")])
        elif node.inputs[3].dtype != dt:
            bias = b.add("Cast", [bias], to=b.onnx_dtype(dt))
        scores = b.add("Add", [scores, bias])
    if node.attrs["causal"]:  # top-left aligned, as the IR op and SDPA's is_causal
        lq, lk = qt.shape[-2], kt.shape[-2]
        if is_symbolic((lq, lk)):
            ones = b.add("ConstantOfShape", [b.dims((lq, lk))],
                         value=onnx.helper.make_tensor("one", onnx.TensorProto.FLOAT, [1], [1.0]))
            keep = b.add("Trilu", [ones, b.const(np.asarray(0, dtype=np.int64), "k")], upper=0)
            mask = b.add("Where", [b.add("Cast", [keep], to=onnx.TensorProto.BOOL),
                                   b.scalar(0.0, dt, "zero"), b.scalar(float("-inf"), dt, "ninf")])
            scores = b.add("Add", [scores, mask])
        else:
            keep = torch.ones(lq, lk, dtype=torch.bool).tril()
            mask = torch.zeros(lq, lk, dtype=dt).masked_fill(~keep, float("-inf"))
            scores = b.add("Add", [scores, b.const(mask, f"{node.name}_causal_mask")])
    probs = b.add("Softmax", [scores], axis=-1)
    if bias:  # a row the mask removes entirely attends to nothing: 0, as SDPA (not NaN)
        probs = safe_softmax_rows(b, scores, probs, -1, dt)
    return [b.add("MatMul", [probs, v])]


def _pool_attrs(node: Node) -> dict:
    a = node.attrs
    pads = list(a["padding"])
    return {"kernel_shape": list(a["kernel"]), "strides": list(a["stride"]),
            "pads": pads + pads, "ceil_mode": int(a["ceil_mode"])}


def _max_pool(b: OnnxBuilder, node: Node, x: str) -> tuple[str, str]:
    """MaxPool's values and Indices, with a window holding a NaN giving NaN and the first
    NaN's index, as torch (onnxruntime's MaxPool skips NaN): the pool of IsNaN says where."""
    attrs = {"dilations": list(node.attrs["dilation"]), **_pool_attrs(node)}
    y, idx = b.add("MaxPool", [x], n_outputs=2, **attrs)
    dt = node.inputs[0].dtype
    if not dt.is_floating_point:
        return y, idx
    nan_y, nan_idx = b.add("MaxPool", [b.add("Cast", [b.add("IsNaN", [x])],
                                             to=b.onnx_dtype(dt))], n_outputs=2, **attrs)
    has_nan = b.add("Greater", [nan_y, b.scalar(0.0, dt, "zero")])
    return (b.add("Where", [has_nan, b.scalar(float("nan"), dt, "nan"), y]),
            b.add("Where", [has_nan, nan_idx, idx]))


@onnx_lowering("max_pool2d")
def lower_max_pool2d(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """MaxPool (NaN propagating, as torch)."""
    return [_max_pool(b, node, inputs[0])[0]]


@onnx_lowering("max_pool2d_with_indices")
def lower_max_pool2d_with_indices(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """MaxPool's Indices count over the whole (N, C, H, W) tensor; torch's within each
    (H, W) plane: the flat index mod H * W."""
    h, w = node.inputs[0].shape[-2:]
    if is_symbolic((h, w)):
        raise ExportError(f"node {node.name} (max_pool2d_with_indices): symbolic H, W")
    y, idx = _max_pool(b, node, inputs[0])
    return [y, b.add("Mod", [idx, b.const_i64([int(h * w)], "plane")])]


@onnx_lowering("conv_transpose")
def lower_conv_transpose(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """ConvTranspose with symmetric padding and output padding."""
    a = node.attrs
    pads = list(a["padding"])
    return [b.add("ConvTranspose", [i for i in inputs if i], strides=list(a["stride"]),
                  pads=pads + pads, output_padding=list(a["output_padding"]),
                  dilations=list(a["dilation"]), group=a["groups"],
                  kernel_shape=list(node.inputs[1].shape[2:]))]


@onnx_lowering("einsum")
def lower_einsum(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Einsum (indices renamed to lowercase letters, as ONNX spells them)."""
    eq = node.attrs["equation"].replace(" ", "")
    letters = sorted({ch for ch in eq if ch.isalpha()})
    if len(letters) > 26:
        raise ExportError(f"node {node.name} (einsum): more than 26 indices")
    rename = dict(zip(letters, "abcdefghijklmnopqrstuvwxyz", strict=False))
    eq = "".join(rename.get(ch, ch) for ch in eq)
    dt = node.outputs[0].dtype
    xs = [cast_to(b, n, v.dtype, dt) for n, v in zip(inputs, node.inputs, strict=True)]
    return [b.add("Einsum", xs, equation=eq)]


@onnx_lowering("grid_sample")
def lower_grid_sample(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """GridSample (opset 16 spells the modes as torch does)."""
    a = node.attrs
    if node.inputs[0].type.rank != 4:
        raise ExportError(f"node {node.name} (grid_sample): ONNX GridSample samples 4-d inputs")
    x = inputs[0]
    grid = cast_to(b, inputs[1], node.inputs[1].dtype, node.inputs[0].dtype)
    return [b.add("GridSample", [x, grid], mode=a["mode"], padding_mode=a["padding_mode"],
                  align_corners=int(a["align_corners"]))]


@onnx_lowering("topk")
def lower_topk(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """TopK, sorted (k computed at run time when symbolic: a sort of a symbolic dim)."""
    a = node.attrs
    k = b.size(a["k"]) if is_symbolic(a["k"]) else b.const_i64([a["k"]], "k")
    values, indices = b.add("TopK", [inputs[0], k], n_outputs=2,
                            axis=a["dim"], largest=int(a["largest"]), sorted=1)
    return [values, indices]


@onnx_lowering("avg_pool2d")
def lower_avg_pool2d(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """AveragePool (a divisor override rescales the padded-count average)."""
    a = node.attrs
    divisor = a["divisor_override"]
    include_pad = 1 if divisor is not None else int(a["count_include_pad"])
    y = b.add("AveragePool", inputs, count_include_pad=include_pad, **_pool_attrs(node))
    if divisor is not None:
        ratio = math.prod(a["kernel"]) / divisor
        y = b.add("Mul", [y, b.scalar(ratio, node.inputs[0].dtype, "ratio")])
    return [y]


@onnx_lowering("adaptive_avg_pool2d")
def lower_adaptive_avg_pool2d(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """GlobalAveragePool for (1, 1); AveragePool when the sizes divide evenly."""
    h, w = node.inputs[0].shape[-2:]
    oh, ow = node.attrs["output_size"]
    if (oh, ow) == (1, 1):
        return [b.add("GlobalAveragePool", inputs)]
    if is_symbolic((h, w)):
        raise ExportError(f"node {node.name} (adaptive_avg_pool2d): output {oh}x{ow} of a "
                          "symbolic input size has no ONNX form (ONNX has no adaptive pooling)")
    if h % oh or w % ow:
        return [_adaptive_bins(b, _adaptive_bins(b, inputs[0], -2, h, oh), -1, w, ow)]
    kernel = [h // oh, w // ow]
    return [b.add("AveragePool", inputs, kernel_shape=kernel, strides=kernel)]


def _adaptive_bins(b: OnnxBuilder, x: str, axis: int, size: int, out: int) -> str:
    """Adaptive average pooling along one axis: bin i is the mean over
    [floor(i * size / out), ceil((i + 1) * size / out)), one Slice + ReduceMean each (a mean
    over a rectangle is the mean of its row means: the 2-d pool is two of these)."""
    if size == out:
        return x
    parts = []
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        piece = b.add("Slice", [x, b.const_i64([lo], "start"), b.const_i64([hi], "end"),
                                b.const_i64([axis], "axis")])
        parts.append(reduce(b, "ReduceMean", piece, [axis], True))
    return parts[0] if out == 1 else b.add("Concat", parts, axis=axis)


@onnx_lowering("embedding")
def lower_embedding(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Gather rows of the weight (padding_idx only matters for training)."""
    return [b.add("Gather", [inputs[0], inputs[1]], axis=0)]
