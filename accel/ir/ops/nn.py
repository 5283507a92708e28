"""Compute-heavy ops: linear, matmul, convolution, pooling, attention, embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _linear(x, weight, bias=None):  # noqa: ANN001, ANN202
    return F.linear(x, weight, bias)


def _conv(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):  # noqa: ANN001, ANN202
    return _CONV[x.dim() - 2](x, weight, bias, stride, padding, dilation, groups)


def _attention(q, k, v, bias=None, scale=None, causal=False):  # noqa: ANN001, ANN202
    if causal and bias is not None:
        lq, lk = q.shape[-2], k.shape[-2]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()  # as SDPA is_causal
        causal_bias = torch.zeros(lq, lk, dtype=q.dtype, device=q.device)
        causal_bias = causal_bias.masked_fill(~keep, float("-inf"))
        if bias.dtype == torch.bool:
            bias = torch.zeros_like(bias, dtype=q.dtype).masked_fill(~bias, float("-inf"))
        bias, causal = bias + causal_bias, False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=causal, scale=scale)


_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _conv_transpose(x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),  # noqa: ANN001, ANN202, PLR0913
                    dilation=(1, 1), groups=1):
    return _CONV_T[x.dim() - 2](x, weight, bias, stride, padding, output_padding, groups,
                                dilation)


def _max_pool2d_with_indices(x, kernel, stride, padding=(0, 0), dilation=(1, 1),  # noqa: ANN001, ANN202
                             ceil_mode=False):
    return F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)


def _einsum(*xs, equation):  # noqa: ANN001, ANN202
    return torch.einsum(equation, *xs)


def _einsum_flops(inputs, equation: str) -> int:  # noqa: ANN001
    """2 x the product of every index's size (a multiply-add per point of the index space);
    with an ellipsis, the inputs' total size."""
    spec = equation.replace(" ", "").split("->")[0].split(",")
    if "." in equation or len(spec) != len(inputs):
        return 2 * sum(t.numel for t in inputs if t is not None)
    sizes = {}
    for letters, t in zip(spec, inputs, strict=True):
        sizes.update(zip(letters, t.shape, strict=False))
    return 2 * math.prod(sizes.values())


def _topk(x, k, dim, largest=True):  # noqa: ANN001, ANN202
    """torch.topk(sorted=True) with ties in index order (torch leaves their order open): a
    stable sort, cut at k."""
    values, indices = torch.sort(x, stable=True, dim=dim, descending=largest)
    return values.narrow(dim, 0, k), indices.narrow(dim, 0, k)


def _grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False):  # noqa: ANN001, ANN202
    return F.grid_sample(x, grid, mode, padding_mode, align_corners)


def _max_pool2d(x, kernel, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):  # noqa: ANN001, ANN202
    return F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)


def _avg_pool2d(x, kernel, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True,  # noqa: ANN001, ANN202
                divisor_override=None):
    return F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _adaptive_avg_pool2d(x, output_size):  # noqa: ANN001, ANN202
    return F.adaptive_avg_pool2d(x, output_size)


def _embedding(weight, indices, padding_idx=None):  # noqa: ANN001, ANN202
    return F.embedding(indices, weight, padding_idx)


def _linear_flops(i, o, a) -> int:  # noqa: ANN001
    return 2 * o[0].numel * i[1].shape[1]


def _matmul_flops(i, o, a) -> int:  # noqa: ANN001
    return 2 * o[0].numel * i[0].shape[-1]


def _conv_flops(i, o, a) -> int:  # noqa: ANN001
    w = i[1].shape
    return 2 * o[0].numel * w[1] * math.prod(w[2:])


def _attention_flops(i, o, a) -> int:  # noqa: ANN001
    q, k = i[0].shape, i[1].shape
    batch = math.prod(q[:-2])
    return batch * (4 * q[-2] * k[-2] * q[-1] + 5 * q[-2] * k[-2])


_PAIR = Attr(tuple)
register_op(OpDef("linear", ("x", "weight", "bias?"), _linear, OpKind.MATMUL,
                  flops=_linear_flops, doc="x @ weight.T + bias"))
register_op(OpDef("matmul", ("a", "b"), torch.matmul, OpKind.MATMUL,
                  flops=_matmul_flops, doc="batched matrix product with broadcasting"))
register_op(OpDef(
    "conv", ("x", "weight", "bias?"), _conv, OpKind.CONV,
    {"stride": _PAIR, "padding": _PAIR, "dilation": _PAIR, "groups": Attr(int, 1)},
    flops=_conv_flops, doc="1-, 2- or 3-d convolution (rank from the input)",
))
register_op(OpDef(
    "conv_transpose", ("x", "weight", "bias?"), _conv_transpose, OpKind.CONV,
    {"stride": _PAIR, "padding": _PAIR, "output_padding": _PAIR, "dilation": _PAIR,
     "groups": Attr(int, 1)},
    flops=lambda i, o, a: 2 * i[0].numel * i[1].shape[1] * math.prod(i[1].shape[2:]),
    doc="1-, 2- or 3-d transposed convolution (weight: in, out/groups, kernel...)",
))
register_op(OpDef(
    "einsum", ("xs*",), _einsum, OpKind.MATMUL, {"equation": Attr(str)},
    flops=lambda i, o, a: _einsum_flops(i, a["equation"]),
    doc="torch.einsum(equation, *xs)",
))
register_op(OpDef(
    "topk", ("x",), _topk, OpKind.REDUCTION,
    {"k": Attr(int), "dim": Attr(int), "largest": Attr(bool, True)}, num_outputs=2,
    flops=lambda i, o, a: i[0].numel,
    doc="the k largest (or smallest) entries along dim, sorted (ties in index order, NaN "
        "largest), and their indices",
))
register_op(OpDef(
    "grid_sample", ("x", "grid"), _grid_sample, OpKind.GATHER,
    {"mode": Attr(str, "bilinear", "'bilinear', 'nearest' or 'bicubic'"),
     "padding_mode": Attr(str, "zeros", "'zeros', 'border' or 'reflection'"),
     "align_corners": Attr(bool, False)},
    flops=lambda i, o, a: 8 * o[0].numel,
    doc="sample (N, C, H, W) x at the (N, H_out, W_out, 2) grid's (x, y) points in [-1, 1]",
))
register_op(OpDef(
    "attention", ("q", "k", "v", "bias?"), _attention, OpKind.ATTENTION,
    {"scale": Attr((float, type(None)), None, "logit scale; None means 1/sqrt(head_dim)"),
     "causal": Attr(bool, False, "apply a causal (lower-triangular) mask")},
    flops=_attention_flops,
    doc="softmax(q @ k^T * scale + bias) @ v; bias is additive (float) or a keep-mask (bool)",
))
register_op(OpDef(
    "max_pool2d", ("x",), _max_pool2d, OpKind.CONV,
    {"kernel": _PAIR, "stride": _PAIR, "padding": Attr(tuple, (0, 0)),
     "dilation": Attr(tuple, (1, 1)), "ceil_mode": Attr(bool, False)},
    flops=lambda i, o, a: o[0].numel * math.prod(a["kernel"]), doc="2-d max pooling",
))
register_op(OpDef(
    "max_pool2d_with_indices", ("x",), _max_pool2d_with_indices, OpKind.CONV,
    {"kernel": _PAIR, "stride": _PAIR, "padding": Attr(tuple, (0, 0)),
     "dilation": Attr(tuple, (1, 1)), "ceil_mode": Attr(bool, False)}, num_outputs=2,
    flops=lambda i, o, a: o[0].numel * math.prod(a["kernel"]),
    doc="2-d max pooling and the flat (h * W + w) input index of each max",
))
register_op(OpDef(
    "avg_pool2d", ("x",), _avg_pool2d, OpKind.CONV,
    {"kernel": _PAIR, "stride": _PAIR, "padding": Attr(tuple, (0, 0)),
     "ceil_mode": Attr(bool, False), "count_include_pad": Attr(bool, True),
     "divisor_override": Attr((int, type(None)), None)},
    flops=lambda i, o, a: o[0].numel * math.prod(a["kernel"]), doc="2-d average pooling",
))
register_op(OpDef(
    "adaptive_avg_pool2d", ("x",), _adaptive_avg_pool2d, OpKind.CONV,
    {"output_size": _PAIR}, flops=lambda i, o, a: i[0].numel,
    doc="2-d adaptive average pooling",
))
register_op(OpDef(
    "embedding", ("weight", "indices"), _embedding, OpKind.GATHER,
    {"padding_idx": Attr((int, type(None)), None)}, flops=lambda i, o, a: 0,
    doc="rows of weight selected by integer indices",
))
