"""ATen ops whose output sizes depend on the data, as IR built on ``nonzero``.

Every such size is a *counted* size symbol: the number of nonzero entries of a boolean
value the graph computes (:meth:`ImportContext.count_symbol`), defined by the ``nonzero``
node that reads it. So one data-dependent op serves them all:

- ``argwhere`` / ``nonzero``: ``nonzero`` itself;
- ``masked_select`` and boolean-mask indexing ``x[mask]``: the flat offsets of the mask's
  nonzero entries, then ``index_select``;
- ``unique`` / ``unique_consecutive`` (flattened): a stable sort (not for the consecutive
  one), the mask of the first entry of each run of equal values, its offsets; the values
  there, the counts from consecutive offsets, the inverse from a cumulative sum of the mask;
- ``tensor_split`` by a tensor of indices: the positions of piece ``j`` are those with
  ``start_j <= p < end_j``, a mask per piece.

torch.export traces each of these sizes as an unbacked symbol; the handler binds it to the
counted symbol, so sizes torch derives later (``x[mask].shape[0]``) are accel's.
"""

from __future__ import annotations

from typing import Any

import torch

from accel.frontend.aten_map import (
    ImportContext,
    Unsupported,
    _broadcast_to,
    aten,
    handles,
)
from accel.ir.graph import Value
from accel.ir.shapes import is_symbolic


def _traced_dim(c: ImportContext, output: int, axis: int) -> Any:
    """The size torch traced for dim ``axis`` of output ``output`` of the call."""
    val = c.traced
    vals = val if isinstance(val, list | tuple) else (val,)
    if output < len(vals) and isinstance(vals[output], torch.Tensor):
        return vals[output].shape[axis]
    return None


def _nonzero_of(c: ImportContext, x: Value, traced: Any = None) -> Value:
    """int64 [N, rank]: the coordinates of the nonzero entries of ``x``."""
    return c.op("nonzero", x, count=c.count_symbol(x, traced))


def _offsets(c: ImportContext, mask: Value, traced: Any = None) -> Value:
    """int64 [N]: the flat (row-major) offsets of the nonzero entries of ``mask``."""
    flat = mask if mask.type.rank == 1 else c.op("reshape", mask, shape=(mask.type.numel,))
    coords = _nonzero_of(c, flat, traced)
    return c.op("reshape", coords, shape=(coords.shape[0],))


@handles(aten.nonzero.default, aten.argwhere.default)
def _nonzero(c: ImportContext, x: Value) -> Value:
    return _nonzero_of(c, x, _traced_dim(c, 0, 0))


@handles(aten.masked_select.default)
def _masked_select(c: ImportContext, x: Value, mask: Value) -> Value:
    """The entries of ``x`` (broadcast with ``mask``) where ``mask`` is true, flattened."""
    if not isinstance(mask, Value) or mask.dtype != torch.bool:
        raise Unsupported("masked_select with a non-boolean mask")
    if x.shape == mask.shape:
        shape = x.shape
    elif x.type.is_static and mask.type.is_static:
        shape = tuple(torch.broadcast_shapes(tuple(x.shape), tuple(mask.shape)))
    else:
        raise Unsupported("masked_select broadcasting symbolic shapes")
    xb, mb = _broadcast_to(c, x, shape), _broadcast_to(c, mask, shape)
    flat = c.op("reshape", xb, shape=(xb.type.numel,)) if xb.type.rank != 1 else xb
    return c.op("index_select", flat, _offsets(c, mb, _traced_dim(c, 0, 0)), dim=0)


def masked_index(c: ImportContext, x: Value, mask: Value, first: int) -> Value:
    """``x[..., mask, ...]``: the dims ``first``.. of ``x`` that ``mask`` covers become one
    dim of its nonzero entries (called by the ``index`` handler for a lone boolean mask)."""
    k = mask.type.rank
    if mask.shape != x.shape[first:first + k]:
        raise Unsupported("boolean-mask indexing with a mask of another shape")
    rows = mask.type.numel
    merged = x.shape[:first] + (rows,) + x.shape[first + k:]
    xr = x if merged == x.shape else c.op("reshape", x, shape=merged)
    return c.op("index_select", xr, _offsets(c, mask, _traced_dim(c, 0, first)), dim=first)


def _flat(c: ImportContext, x: Value) -> Value:
    if x.type.rank == 1:
        return x
    return c.op("reshape", x, shape=(x.type.numel,))


def _runs(c: ImportContext, x: Value, sort: bool, what: str) -> tuple[Value, Value, Value]:
    """(values, inverse, counts) of the runs of equal values of ``x`` flattened (sorted
    first for ``unique``); what the model does not use is dropped with the dead nodes."""
    n = x.type.numel  # an expression of the graph's symbols for a symbolic shape
    if n == 0:
        raise Unsupported(f"{what} of an empty tensor")
    if x.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16,
                       torch.int32, torch.int64):
        raise Unsupported(f"{what} of {x.dtype}")
    flat = _flat(c, x)
    perm = None
    if sort:
        node = c.rw.node("topk", flat, k=n, dim=0, largest=False)  # stable: ties in order
        flat, perm = node.outputs
    if isinstance(n, int) and n == 1:  # one run: nothing depends on the data
        return (flat, c.rw.const(torch.zeros(tuple(x.shape), dtype=torch.int64), "inverse"),
                c.rw.const(torch.ones(1, dtype=torch.int64), "counts"))
    # the first entry of each run: [n] bool
    after = c.op("slice", flat, dim=0, start=1, end=n)
    before = c.op("slice", flat, dim=0, start=0, end=n - 1)
    first = c.op("concat", c.rw.const(torch.ones(1, dtype=torch.bool), "first"),
                 c.op("ne", after, before), dim=0)
    starts = _offsets(c, first, _traced_dim(c, 0, 0))
    values = c.op("index_select", flat, starts, dim=0)
    run = c.op("sub", c.op("cumsum", c.op("cast", first, dtype=torch.int64), dim=0),
               c.rw.const(torch.tensor(1, dtype=torch.int64), "one"))
    if perm is not None:  # run ids in sorted order, back to each entry's position
        run = c.op("scatter", c.filled((n,), 0, torch.int64), perm, run, dim=0)
    inverse = run if x.type.rank == 1 else c.op("reshape", run, shape=tuple(x.shape))
    m = starts.shape[0]
    ends = c.op("concat", c.op("slice", starts, dim=0, start=1, end=m),
                c.op("reshape", c.tensor(n, starts), shape=(1,)), dim=0)
    counts = c.op("sub", ends, starts)
    return values, inverse, counts


@handles(aten._unique2.default)
def _unique2(c: ImportContext, x: Value, sorted: bool = True,  # noqa: A002
             return_inverse: bool = False, return_counts: bool = False) -> tuple:
    """torch.unique (dim=None): sorted whatever ``sorted`` says, as ATen's CPU kernel does."""
    return _runs(c, x, True, "unique")


@handles(aten.unique_consecutive.default)
def _unique_consecutive(c: ImportContext, x: Value, return_inverse: bool = False,
                        return_counts: bool = False, dim: Any = None) -> tuple:
    if dim is not None:
        raise Unsupported("unique_consecutive along a dim")
    return _runs(c, x, False, "unique_consecutive")


@handles(aten.tensor_split.tensor_indices_or_sections)
def _tensor_split(c: ImportContext, x: Value, indices: Value, dim: int = 0) -> list[Value]:
    """Pieces ``x[start_j:end_j]`` along ``dim`` at the (data) split indices: piece ``j``
    gathers the positions ``start_j <= p < end_j`` (empty when ``start_j >= end_j``), with
    negative indices counted from the end and clamped to the dim, as Python slices are."""
    if not isinstance(indices, Value) or indices.type.rank != 1 or indices.dtype != torch.int64:
        raise Unsupported("tensor_split by a 0-d (sections) or non-int64 tensor")
    if not indices.type.is_static or x.type.rank == 0:
        raise Unsupported("tensor_split with a symbolic number of indices")
    d = dim % x.type.rank
    n = x.shape[d]  # an expression for a symbolic dim
    k = indices.shape[0]
    pos = (c.op("arange", end=n) if is_symbolic(n)
           else c.rw.const(torch.arange(n, dtype=torch.int64), "positions"))
    size = c.tensor(n, indices)
    zero = c.rw.const(torch.tensor(0, dtype=torch.int64), "zero")
    negative = c.op("cast", c.op("lt", indices, zero), dtype=torch.int64)
    wrapped = c.op("add", indices, c.op("mul", negative, size))
    bounds = c.op("minimum", c.op("maximum", wrapped, zero), size)  # [k] in [0, n]
    pieces = []
    for j in range(k + 1):
        mask = None
        if j > 0:
            start = c.op("select", bounds, dim=0, index=j - 1)
            mask = c.op("ge", pos, start)
        if j < k:
            end = c.op("select", bounds, dim=0, index=j)
            below = c.op("lt", pos, end)
            mask = below if mask is None else c.op("logical_and", mask, below)
        if mask is None:  # no indices: the whole tensor
            pieces.append(x)
            continue
        pieces.append(c.op("index_select", x, _offsets(c, mask, _traced_dim(c, j, d)), dim=d))
    return pieces


@handles(aten.nonzero_numpy.default)
def _nonzero_numpy(c: ImportContext, x: Value) -> list[Value]:
    """``nonzero(as_tuple=True)``: one [N] coordinate vector per dim."""
    if x.type.rank == 0:
        raise Unsupported("nonzero(as_tuple=True) of a 0-d tensor")
    coords = _nonzero_of(c, x, _traced_dim(c, 0, 0))
    return [c.op("select", coords, dim=1, index=j) for j in range(x.type.rank)]


@handles(aten.combinations.default)
def _combinations(c: ImportContext, x: Value, r: int = 2,
                  with_replacement: bool = False) -> Value:
    """Static after all (ATen builds it with a masked_select): the rows of index tuples are
    a constant computed at capture, then one index_select. (torch.export of torch 2.13
    captures r = 1 only: PendingUnbackedSymbolNotFound for r >= 2.)"""
    if x.type.rank != 1 or not x.type.is_static or not isinstance(r, int) or r < 1:
        raise Unsupported("combinations of a symbolic or non-1-d tensor, or r < 1")
    n = x.shape[0]
    rows = torch.combinations(torch.arange(n, dtype=torch.int64), r, bool(with_replacement))
    if rows.numel() == 0:
        return c.filled((0, r), 0, x.dtype)
    picked = c.op("index_select", x, c.rw.const(rows.reshape(-1), "combinations"), dim=0)
    return c.op("reshape", picked, shape=tuple(rows.shape))


@handles(aten.nonzero_static.default)
def _nonzero_static(c: ImportContext, x: Value, *, size: int, fill_value: int = -1) -> Value:
    """int64 [size, rank]: the first ``size`` coordinates of the nonzero entries, rows of
    ``fill_value`` after the last one (a static size: ``nonzero`` padded, then cut)."""
    if not isinstance(size, int):
        raise Unsupported("nonzero_static with a symbolic size")
    rank = x.type.rank
    fill = c.filled((size, rank), fill_value, torch.int64)
    if size == 0 or rank == 0:
        return fill
    coords = _nonzero_of(c, x)
    padded = c.op("concat", coords, fill, dim=0)
    return c.op("slice", padded, dim=0, start=0, end=size)
