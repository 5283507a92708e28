"""Inference BatchNorm as a per-channel affine map (fold-bn, merge-branches)."""

from __future__ import annotations

import torch

from accel.ir.graph import Graph, Node


def bn_scale_shift(graph: Graph, bn: Node) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel float64 ``(scale, shift)`` with ``BN(y) = y·scale + shift`` (None: not const)."""
    x, mean, var, *affine = bn.inputs
    weight = affine[0] if affine else None
    bias = affine[1] if len(affine) > 1 else None
    if not all(graph.is_const(v) for v in (mean, var) if v is not None):
        return None
    if any(v is not None and not graph.is_const(v) for v in (weight, bias)):
        return None
    mu = graph.const(mean).double()
    sigma = torch.sqrt(graph.const(var).double() + bn.attrs["eps"])
    gamma = graph.const(weight).double() if weight is not None else torch.ones_like(mu)
    beta = graph.const(bias).double() if bias is not None else torch.zeros_like(mu)
    scale = gamma / sigma
    return scale, beta - mu * scale
