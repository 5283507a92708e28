"""Merge parallel conv branches that read the same input and are summed (RepVGG, MobileOne,
ACNet/DBB) into one conv with one bias.

Each branch becomes a kernel of the widest branch's size, then kernels and biases add up:

- conv k×k (weight and bias constant) as is; a smaller conv (e.g. 1×1) zero-padded to the
  centre, only when its padding makes the outputs align;
- identity-BN ``batch_norm(x)`` (C_in == C_out): 1 at [i, i mod (C_in/groups), centre], then
  the BN's per-channel scale and shift;
- identity ``x``: the same kernel without BN;
- ``avg_pool2d(x)``: a depthwise kernel of 1/k² (count_include_pad or no padding).

Runs after ``fold-bn`` (each conv branch is then one conv with a bias). Branches whose
stride, groups, dilation or padding do not align are left in the sum untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.passes.common.batchnorm import bn_scale_shift
from accel.passes.registry import PassContext, register_pass


@dataclass(frozen=True)
class ConvGeometry:
    """The geometry every merged branch must share: kernel, stride, padding, groups."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    in_chans: int
    out_chans: int


def _sum_leaves(graph: Graph, root: Node) -> list[Value]:
    """The summands of a tree of adds rooted at ``root`` (inner adds must be single-use)."""
    leaves: list[Value] = []
    stack = list(reversed(root.inputs))
    while stack:
        v = stack.pop()
        p = graph.producer(v)
        if (p is not None and p.op == "add" and graph.num_uses(v) == 1
                and p.outputs[0].shape == root.outputs[0].shape and len(p.inputs) == 2
                and all(i is not None and i.shape == v.shape for i in p.inputs)):
            stack.extend(reversed(p.inputs))
        else:
            leaves.append(v)
    return leaves


def _is_sum_root(graph: Graph, node: Node) -> bool:
    if node.op != "add":
        return False
    users = graph.users(node.outputs[0])
    inner = graph.num_uses(node.outputs[0]) == 1 and users and users[0].op == "add"
    return not inner or users[0].outputs[0].shape != node.outputs[0].shape


def _branch_input(graph: Graph, leaf: Value) -> Value | None:
    """The tensor a mergeable branch reads (``leaf`` itself for an identity branch)."""
    p = graph.producer(leaf)
    if p is not None and graph.num_uses(leaf) == 1 and p.op in ("conv", "batch_norm", "avg_pool2d"):
        return p.inputs[0]
    return leaf


def _centre_pads(geo: ConvGeometry, kernel: tuple[int, ...], padding: tuple[int, ...]
                 ) -> list[int] | None:
    """F.pad widths centring a ``kernel`` in ``geo.kernel``; None if outputs would not align."""
    pads: list[int] = []
    for d in range(2):
        grow = geo.kernel[d] - kernel[d]
        if grow < 0 or grow % 2 or geo.padding[d] - padding[d] != grow // 2:
            return None
        pads = [grow // 2, grow // 2] + pads
    return pads


def _conv_kernel(graph: Graph, node: Node, geo: ConvGeometry
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
    w_v, b_v = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
    if not graph.is_const(w_v) or (b_v is not None and not graph.is_const(b_v)):
        return None
    a = node.attrs
    if a["groups"] != geo.groups or tuple(a["stride"]) != geo.stride:
        return None
    if tuple(a["dilation"]) != (1, 1):
        return None
    w = graph.const(w_v).double()
    pads = _centre_pads(geo, tuple(w.shape[2:]), tuple(a["padding"]))
    if pads is None:
        return None
    bias = graph.const(b_v).double() if b_v is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    return F.pad(w, pads), bias


def _eye_kernel(geo: ConvGeometry, per_channel: torch.Tensor) -> torch.Tensor:
    """k×k kernel putting ``per_channel[i]`` at [i, i mod (C_in/groups), centre]."""
    cin_g = geo.in_chans // geo.groups
    k = torch.zeros(geo.out_chans, cin_g, *geo.kernel, dtype=torch.float64)
    ch, cw = geo.kernel[0] // 2, geo.kernel[1] // 2
    idx = torch.arange(geo.out_chans)
    k[idx, idx % cin_g, ch, cw] = per_channel
    return k


def _centre_aligned(geo: ConvGeometry) -> bool:
    return (geo.stride == (1, 1) and geo.in_chans == geo.out_chans
            and all(k % 2 == 1 and p == k // 2
                    for k, p in zip(geo.kernel, geo.padding, strict=True)))


def _leaf_kernel(graph: Graph, leaf: Value, geo: ConvGeometry
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The branch as a (kernel, bias) pair in ``geo``, or None if it does not fit."""
    p = graph.producer(leaf)
    ones = torch.ones(geo.out_chans, dtype=torch.float64)
    if p is None or graph.num_uses(leaf) != 1 or p.op not in ("conv", "batch_norm", "avg_pool2d"):
        return (_eye_kernel(geo, ones), torch.zeros_like(ones)) if _centre_aligned(geo) else None
    if p.op == "conv":
        return _conv_kernel(graph, p, geo)
    if p.op == "batch_norm":
        ss = bn_scale_shift(graph, p)
        if ss is None or not _centre_aligned(geo) or ss[0].numel() != geo.out_chans:
            return None
        return _eye_kernel(geo, ss[0]), ss[1]
    a = p.attrs  # avg_pool2d: a depthwise conv of 1/k²
    kernel, stride, padding = tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"])
    if (a["ceil_mode"] or a["divisor_override"] is not None or stride != geo.stride
            or (any(padding) and not a["count_include_pad"]) or geo.in_chans != geo.out_chans):
        return None
    box = torch.zeros(geo.out_chans, geo.in_chans // geo.groups, *kernel, dtype=torch.float64)
    idx = torch.arange(geo.out_chans)
    box[idx, idx % (geo.in_chans // geo.groups)] = 1.0 / (kernel[0] * kernel[1])
    pads = _centre_pads(geo, kernel, padding)
    return None if pads is None else (F.pad(box, pads), torch.zeros_like(ones))


def _geometry(graph: Graph, leaves: list[Value]) -> tuple[ConvGeometry, Node] | None:
    """The geometry of the widest const-weight 2-d conv among ``leaves``."""
    best: Node | None = None
    for leaf in leaves:
        p = graph.producer(leaf)
        if (p is not None and p.op == "conv" and len(p.inputs[1].shape) == 4
                and graph.is_const(p.inputs[1]) and graph.num_uses(leaf) == 1):
            if best is None or p.inputs[1].shape[2:] > best.inputs[1].shape[2:]:
                best = p
    if best is None:
        return None
    w, a = best.inputs[1].shape, best.attrs
    geo = ConvGeometry(tuple(w[2:]), tuple(a["stride"]), tuple(a["padding"]), a["groups"],
                       best.inputs[0].shape[1], w[0])
    return geo, best


def _merge_group(graph: Graph, rw: Rewriter, leaves: list[Value], out: Value
                 ) -> tuple[Value, list[Value]] | None:
    """Merge the branches of ``leaves`` (one input); returns (merged conv, unmerged leaves)."""
    found = _geometry(graph, leaves)
    if found is None:
        return None
    geo, ref = found
    kernel = torch.zeros(0)
    bias = torch.zeros(0)
    merged, rest = 0, []
    for leaf in leaves:
        kb = _leaf_kernel(graph, leaf, geo) if leaf.shape == out.shape else None
        if kb is None:
            rest.append(leaf)
            continue
        kernel = kb[0] if merged == 0 else kernel + kb[0]
        bias = kb[1] if merged == 0 else bias + kb[1]
        merged += 1
    if merged < 2:
        return None
    dtype = ref.inputs[1].dtype
    w = rw.const(kernel.to(dtype), f"{ref.name}_merged_weight")
    b = rw.const(bias.to(dtype), f"{ref.name}_merged_bias")
    conv = rw.op("conv", ref.inputs[0], w, b, name=f"{ref.name}_merged", meta=ref.meta,
                 **ref.attrs)
    return conv, rest


@register_pass("merge-branches")
def merge_branches(graph: Graph, ctx: PassContext) -> Graph:
    """Merge summed conv / 1×1 / identity-BN / identity / avg-pool branches into one conv."""
    rw = Rewriter(graph, pass_name="merge-branches")
    blocks, branches = 0, 0
    for node in graph.nodes:
        if not _is_sum_root(graph, node):
            continue
        leaves = _sum_leaves(graph, node)
        groups: dict[Value, list[Value]] = {}
        for leaf in leaves:
            src = _branch_input(graph, leaf)
            if src is not None:
                groups.setdefault(src, []).append(leaf)
        terms: list[Value] = []
        changed = False
        for group in groups.values():
            res = _merge_group(graph, rw, group, node.outputs[0])
            if res is None or len(res[0].shape) != 4 or res[0].shape[1] != node.outputs[0].shape[1]:
                terms.extend(group)
                continue
            conv, rest = res
            terms.append(conv)
            terms.extend(rest)
            branches += len(group) - len(rest)
            changed = True
        if not changed:
            continue
        total = terms[0]
        for t in terms[1:]:
            total = rw.op("add", total, t)
        rw.replace(node.outputs[0], total)
        blocks += 1
    if not blocks:
        ctx.skip("no summed parallel branches with aligned conv geometry")
        return graph
    ctx.note(f"merged {branches} branches into {blocks} conv(s)")
    return rw.finish()
