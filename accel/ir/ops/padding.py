"""Ops whose output size depends on the data: ``nonzero``, and the padding-removal ops for
variable-length text encoders (ByteTransformer, arXiv 2210.03052).

``nonzero`` gives the coordinates [N, rank] of the nonzero entries of its input; N is a
*counted* size symbol (see :meth:`accel.ir.graph.Graph.counted_symbols`), defined by the
node: a call reads its value by counting its input's nonzero entries, once that input is
computed. The frontend builds data-dependent selections from it (``argwhere``,
``masked_select``, boolean-mask indexing, ``unique``, ``tensor_split`` by a tensor).

A batch of sequences padded to a common length S carries a padding mask [B, S] (nonzero:
a real token). ``token_offsets`` lists the flat positions ``b * S + s`` of the real tokens;
their count T depends on the mask's values, not only on its shape: its size symbol is a
*counted* symbol of the graph (``Graph.count_sources``), whose value a call reads by counting
the mask's nonzero entries. ``pack_tokens`` gathers the rows of a [B, S, ...] tensor at those
offsets into [T, ...]; ``unpack_tokens`` scatters them back into a zero-filled [B, S, ...]
tensor, so padded positions of an unpacked value are zeros.
"""

from __future__ import annotations

import torch

from accel.ir.ops.registry import Attr, OpDef, OpKind, register_op
from accel.ir.shapes import symbol
from accel.ir.types import TensorType


def token_offsets(mask: torch.Tensor, *, count: str) -> torch.Tensor:
    """int64 [T]: flat offsets ``b * S + s`` of the nonzero entries of ``mask`` [B, S]."""
    return torch.nonzero(mask.reshape(-1)).reshape(-1)


def pack_tokens(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[T, ...]: the rows of ``x`` [B, S, ...] at flat token ``offsets``."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]).index_select(0, offsets)


def unpack_tokens(packed: torch.Tensor, offsets: torch.Tensor, like: torch.Tensor
                  ) -> torch.Tensor:
    """[B, S, ...] (B, S from ``like``): ``packed`` rows at ``offsets``, zeros elsewhere."""
    b, s = like.shape[0], like.shape[1]
    out = packed.new_zeros((b * s, *packed.shape[1:]))
    return out.index_copy_(0, offsets, packed).reshape(b, s, *packed.shape[1:])


def _offsets_infer(i, a):  # noqa: ANN001, ANN202
    return (TensorType((symbol(a["count"]),), torch.int64, i[0].device),)


def nonzero(x: torch.Tensor, *, count: str) -> torch.Tensor:
    """int64 [N, rank]: the coordinates of the nonzero entries of ``x`` in row-major order."""
    return torch.nonzero(x)


def _nonzero_infer(i, a):  # noqa: ANN001, ANN202
    return (TensorType((symbol(a["count"]), i[0].rank), torch.int64, i[0].device),)


def _pack_infer(i, a):  # noqa: ANN001, ANN202
    x, off = i[0], i[1]
    return (TensorType((off.shape[0], *x.shape[2:]), x.dtype, x.device),)


def _unpack_infer(i, a):  # noqa: ANN001, ANN202
    packed, like = i[0], i[2]
    return (TensorType((like.shape[0], like.shape[1], *packed.shape[1:]), packed.dtype,
                       packed.device),)


register_op(OpDef(
    "token_offsets", ("mask",), token_offsets, OpKind.GATHER,
    {"count": Attr(str, doc="the counted size symbol naming T, the number of real tokens")},
    infer=_offsets_infer, flops=lambda i, o, a: 0, defines_count=True,
    doc="flat offsets [T] of the real tokens (nonzero entries) of a padding mask [B,S]",
))
register_op(OpDef(
    "nonzero", ("x",), nonzero, OpKind.GATHER,
    {"count": Attr(str, doc="the counted size symbol naming N, the number of nonzero entries")},
    infer=_nonzero_infer, flops=lambda i, o, a: 0, defines_count=True,
    doc="coordinates [N, rank] of the nonzero entries of x (torch.nonzero; N depends on the "
        "data: a counted size symbol)",
))
register_op(OpDef(
    "pack_tokens", ("x", "offsets"), pack_tokens, OpKind.GATHER,
    infer=_pack_infer, flops=lambda i, o, a: 0,
    doc="gather the real tokens of x [B,S,...] into [T,...]",
))
register_op(OpDef(
    "unpack_tokens", ("packed", "offsets", "like"), unpack_tokens, OpKind.GATHER,
    infer=_unpack_infer, flops=lambda i, o, a: 0,
    doc="scatter packed tokens [T,...] back to [B,S,...] (B, S from like); padding is zeros",
))
