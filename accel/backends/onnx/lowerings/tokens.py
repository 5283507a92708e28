"""ONNX lowerings of the token-reduction ops (bipartite_merge, attentive_prune, token_transform)
as standard ops: Slice, MatMul, TopK, GatherElements, Equal (one-hot maps), Softmax, Concat,
Div."""

from __future__ import annotations

import torch

from accel.backends.onnx.builder import OnnxBuilder
from accel.backends.onnx.registry import onnx_lowering
from accel.ir.graph import Node

_TOKEN_AXIS = 1


def _slice(b: OnnxBuilder, x: str, start: int, end: int, step: int = 1) -> str:
    """x[:, start:end:step] along the token axis."""
    consts = [b.const_i64([v], "tok") for v in (start, end, _TOKEN_AXIS, step)]
    return b.add("Slice", [x, *consts])


def _topk(b: OnnxBuilder, x: str, k: int, largest: bool = True) -> tuple[str, str]:
    """(values, indices) of the k largest (or smallest) entries along the token axis, sorted."""
    vals, idx = b.add("TopK", [x, b.const_i64([k], "k")], n_outputs=2, axis=_TOKEN_AXIS,
                      largest=int(largest), sorted=1)
    return vals, idx


def _sorted_indices(b: OnnxBuilder, idx: str, k: int) -> str:
    """int64 indices [B, k, 1] sorted ascending (TopK smallest on a float copy)."""
    as_float = b.add("Cast", [idx], to=b.onnx_dtype(torch.float32))
    vals, _ = _topk(b, as_float, k, largest=False)
    return b.add("Cast", [vals], to=7)  # INT64


def _expand_index(b: OnnxBuilder, node: Node, idx: str, k: int, c: int) -> str:
    """Index [B, k, 1] broadcast to [B, k, C] (a symbolic batch read at run time)."""
    batch = node.inputs[0].shape[0]
    return b.add("Expand", [idx, b.dims((batch, k, c), "idx_shape")])


def _gather(b: OnnxBuilder, node: Node, x: str, idx: str, k: int, c: int) -> str:
    """x[b, idx[b, j], :] for each batch b and j < k."""
    return b.add("GatherElements", [x, _expand_index(b, node, idx, k, c)], axis=_TOKEN_AXIS)


def _ones_size(b: OnnxBuilder, node: Node, x: str) -> str:
    """A [B, N, 1] tensor of ones shaped like x's first channel."""
    first = b.add("Slice", [x, b.const_i64([0], "s"), b.const_i64([1], "e"),
                            b.const_i64([2], "a")])
    zero = b.add("Mul", [first, b.scalar(0.0, node.inputs[0].dtype, "zero")])
    return b.add("Add", [zero, b.scalar(1.0, node.inputs[0].dtype, "one")])


@onnx_lowering("bipartite_merge")
def lower_bipartite_merge(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """ToMe bipartite soft matching with size-weighted scatter-add merging."""
    x, metric = inputs[0], inputs[1]
    size = inputs[2] if len(inputs) > 2 and inputs[2] else _ones_size(b, node, x)
    _, n, c = node.inputs[0].shape
    r, p = node.attrs["r"], node.attrs["protected"]
    na = (n - p + 1) // 2
    m = _slice(b, metric, p, n)
    if node.inputs[1].dtype != torch.float32:  # match in fp32: TopK has no bf16 kernel
        m = b.add("Cast", [m], to=b.onnx_dtype(torch.float32))
    sq = b.add("Mul", [m, m])
    norm = b.add("Sqrt", [b.add("ReduceSum", [sq, b.const_i64([-1], "ax")], keepdims=1)])
    m = b.add("Div", [m, norm])
    m_a, m_b = _slice(b, m, 0, n - p, 2), _slice(b, m, 1, n - p, 2)
    scores = b.add("MatMul", [m_a, b.add("Transpose", [m_b], perm=[0, 2, 1])])  # [B, Na, Nb]
    best, best_dst = b.add("TopK", [scores, b.const_i64([1], "k")], n_outputs=2, axis=-1,
                           largest=1, sorted=1)  # [B, Na, 1]
    _, order = _topk(b, best, na)  # [B, Na, 1], best first
    src_idx = _slice(b, order, 0, r)
    keep_idx = _sorted_indices(b, _slice(b, order, r, na), na - r)
    dst_idx = b.add("GatherElements", [best_dst, src_idx], axis=_TOKEN_AXIS)
    # Only B tokens change: B' = (x_B s_B + Pᵀ (x_src s_src)) / (s_B + Pᵀ s_src), where
    # P [B, r, Nb] is the one-hot map of each merged source to its destination. Two small
    # MatMuls replace ScatterElements(add) over an index expanded to [B, r, C]: onnxruntime's
    # MatMul is far better optimised, and the one-hot products are exact.
    dtype = b.onnx_dtype(node.inputs[0].dtype)
    a_x, b_x = _slice(b, x, p, n, 2), _slice(b, x, p + 1, n, 2)
    a_s, b_s = _slice(b, size, p, n, 2), _slice(b, size, p + 1, n, 2)
    src_s = b.add("GatherElements", [a_s, src_idx], axis=_TOKEN_AXIS)
    src_x = b.add("Mul", [_gather(b, node, a_x, src_idx, r, c), src_s])
    dst_of = b.const_i64(list(range((n - p) // 2)), "dst")  # [Nb], broadcast against [B, r, 1]
    one_hot = b.add("Cast", [b.add("Equal", [dst_idx, dst_of])], to=dtype)  # [B, r, Nb]
    one_hot_t = b.add("Transpose", [one_hot], perm=[0, 2, 1])  # [B, Nb, r]
    merged_s = b.add("Add", [b_s, b.add("MatMul", [one_hot_t, src_s])])
    merged_x = b.add("Add", [b.add("Mul", [b_x, b_s]), b.add("MatMul", [one_hot_t, src_x])])
    merged_x = b.add("Div", [merged_x, merged_s])
    kept_x = _gather(b, node, a_x, keep_idx, na - r, c)
    kept_s = b.add("GatherElements", [a_s, keep_idx], axis=_TOKEN_AXIS)
    head_x, head_s = _slice(b, x, 0, p), _slice(b, size, 0, p)
    return [b.add("Concat", [head_x, kept_x, merged_x], axis=_TOKEN_AXIS),
            b.add("Concat", [head_s, kept_s, merged_s], axis=_TOKEN_AXIS)]


@onnx_lowering("attentive_prune")
def lower_attentive_prune(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """EViT pruning: TopK by class attention, gather kept tokens, attention-weighted fusion."""
    x, attn = inputs[0], inputs[1]
    size = inputs[2] if len(inputs) > 2 and inputs[2] else _ones_size(b, node, x)
    _, n, c = node.inputs[0].shape
    keep, p = node.attrs["keep"], node.attrs["protected"]
    n_rest = n - p
    fuse = node.attrs["fuse"] and n_rest > keep
    rest_x, rest_s = _slice(b, x, p, n), _slice(b, size, p, n)
    rest_a = b.add("Unsqueeze", [_slice(b, attn, p, n), b.const_i64([-1], "ax")])  # [B,Nr,1]
    _, order = _topk(b, rest_a, n_rest)
    keep_idx = _sorted_indices(b, _slice(b, order, 0, keep), keep)
    parts_x = [_slice(b, x, 0, p), _gather(b, node, rest_x, keep_idx, keep, c)]
    parts_s = [_slice(b, size, 0, p), b.add("GatherElements", [rest_s, keep_idx], axis=1)]
    if fuse:
        drop_idx = _slice(b, order, keep, n_rest)
        n_drop = n_rest - keep
        w = b.add("GatherElements", [rest_a, drop_idx], axis=1)
        drop_x = _gather(b, node, rest_x, drop_idx, n_drop, c)
        ax = b.const_i64([1], "ax")
        total = b.add("ReduceSum", [b.add("Mul", [drop_x, w]), ax], keepdims=1)
        parts_x.append(b.add("Div", [total, b.add("ReduceSum", [w, ax], keepdims=1)]))
        drop_s = b.add("GatherElements", [rest_s, drop_idx], axis=1)
        parts_s.append(b.add("ReduceSum", [drop_s, ax], keepdims=1))
    return [b.add("Concat", parts_x, axis=1), b.add("Concat", parts_s, axis=1)]


def _unit_rows(b: OnnxBuilder, node: Node, m: str) -> str:
    """Rows of metric slice m scaled to unit L2 norm, in fp32 (as the reference matches)."""
    if node.inputs[1].dtype != torch.float32:
        m = b.add("Cast", [m], to=b.onnx_dtype(torch.float32))
    norm = b.add("Sqrt", [b.add("ReduceSum", [b.add("Mul", [m, m]), b.const_i64([-1], "ax")],
                                keepdims=1)])
    return b.add("Div", [m, norm])


def _transform_sides(b: OnnxBuilder, node: Node, x: str, size: str, metric: str,
                     importance: str | None) -> tuple[list[str], list[str], str, int]:
    """(target [x, size], source [x, size], source-to-candidate similarities [B, Ns, Nc],
    offset of the candidates among the targets) of a token_transform node."""
    _, n, c = node.inputs[0].shape
    p, keep = node.attrs["protected"], node.attrs["keep"]
    ns = n - p - keep
    m = _unit_rows(b, node, _slice(b, metric, p, n))  # [B, N-p, D]
    d = node.inputs[1].shape[-1]
    if node.attrs["select"] == "bipartite":
        na = (n - p + 1) // 2
        m_a, m_b = _slice(b, m, 0, n - p, 2), _slice(b, m, 1, n - p, 2)
        scores = b.add("MatMul", [m_a, b.add("Transpose", [m_b], perm=[0, 2, 1])])  # [B,Na,Nb]
        best, _ = b.add("TopK", [scores, b.const_i64([1], "k")], n_outputs=2, axis=-1,
                        largest=1, sorted=1)
        _, order = _topk(b, best, na)  # [B, Na, 1], best match first
        src_idx = _slice(b, order, 0, ns)
        keep_idx = _sorted_indices(b, _slice(b, order, ns, na), na - ns)
        nb = (n - p) // 2
        sim = b.add("GatherElements", [scores, _expand_index(b, node, src_idx, ns, nb)],
                    axis=_TOKEN_AXIS)  # [B, Ns, Nb]
        a_x, b_x = _slice(b, x, p, n, 2), _slice(b, x, p + 1, n, 2)
        a_s, b_s = _slice(b, size, p, n, 2), _slice(b, size, p + 1, n, 2)
        kept_s = b.add("GatherElements", [a_s, keep_idx], axis=_TOKEN_AXIS)
        targets = [b.add("Concat", [_gather(b, node, a_x, keep_idx, na - ns, c), b_x],
                         axis=_TOKEN_AXIS),
                   b.add("Concat", [kept_s, b_s], axis=_TOKEN_AXIS)]
        sources = [_gather(b, node, a_x, src_idx, ns, c),
                   b.add("GatherElements", [a_s, src_idx], axis=_TOKEN_AXIS)]
        return targets, sources, sim, na - ns
    rest_x, rest_s = _slice(b, x, p, n), _slice(b, size, p, n)
    rest_i = b.add("Unsqueeze", [_slice(b, importance, p, n), b.const_i64([-1], "ax")])
    if node.inputs[3].dtype != torch.float32:
        rest_i = b.add("Cast", [rest_i], to=b.onnx_dtype(torch.float32))
    _, order = _topk(b, rest_i, n - p)  # [B, N-p, 1], most important first
    tgt_idx = _sorted_indices(b, _slice(b, order, 0, keep), keep)
    src_idx = _slice(b, order, keep, n - p)
    m_t, m_s = _gather(b, node, m, tgt_idx, keep, d), _gather(b, node, m, src_idx, ns, d)
    sim = b.add("MatMul", [m_s, b.add("Transpose", [m_t], perm=[0, 2, 1])])  # [B, Ns, Nt]
    targets = [_gather(b, node, rest_x, tgt_idx, keep, c),
               b.add("GatherElements", [rest_s, tgt_idx], axis=_TOKEN_AXIS)]
    sources = [_gather(b, node, rest_x, src_idx, ns, c),
               b.add("GatherElements", [rest_s, src_idx], axis=_TOKEN_AXIS)]
    return targets, sources, sim, 0


@onnx_lowering("token_transform")
def lower_token_transform(b: OnnxBuilder, node: Node, inputs: list[str]) -> list[str]:
    """Token Transforming: targets by TopK (importance or ToMe's matching), each source's
    TopK similarities -> Softmax(/tau) -> a weighted one-hot spread map S [B, Nt, Ns];
    x' = (x_t s_t + S (x_src s_src)) / (s_t + S s_src), sizes s_t + S s_src."""
    x, metric = inputs[0], inputs[1]
    size = inputs[2] if len(inputs) > 2 and inputs[2] else _ones_size(b, node, x)
    importance = inputs[3] if len(inputs) > 3 and inputs[3] else None
    _, n, _ = node.inputs[0].shape
    p, keep, k = node.attrs["protected"], node.attrs["keep"], node.attrs["k"]
    ns = n - p - keep
    (t_x, t_s), (s_x, s_s), sim, offset = _transform_sides(b, node, x, size, metric, importance)
    head_x, head_s = _slice(b, x, 0, p), _slice(b, size, 0, p)
    if ns == 0:
        return [b.add("Concat", [head_x, t_x], axis=_TOKEN_AXIS),
                b.add("Concat", [head_s, t_s], axis=_TOKEN_AXIS)]
    n_cand = (n - p) // 2 if node.attrs["select"] == "bipartite" else keep
    kk = min(k, n_cand)
    vals, idx = b.add("TopK", [sim, b.const_i64([kk], "k")], n_outputs=2, axis=-1, largest=1,
                      sorted=1)  # [B, Ns, k]
    tau = b.scalar(node.attrs["tau"], torch.float32, "tau")
    dtype = b.onnx_dtype(node.inputs[0].dtype)
    w = b.add("Cast", [b.add("Softmax", [b.add("Div", [vals, tau])], axis=-1)], to=dtype)
    if offset:
        idx = b.add("Add", [idx, b.const_i64([offset], "offset")])
    ax = b.const_i64([-1], "ax")
    one_hot = b.add("Cast", [b.add("Equal", [b.add("Unsqueeze", [idx, ax]),
                                             b.const_i64(list(range(keep)), "targets")])],
                    to=dtype)  # [B, Ns, k, Nt]
    spread = b.add("ReduceSum", [b.add("Mul", [one_hot, b.add("Unsqueeze", [w, ax])]),
                                 b.const_i64([2], "ax")], keepdims=0)  # [B, Ns, Nt]
    spread_t = b.add("Transpose", [spread], perm=[0, 2, 1])  # [B, Nt, Ns]
    out_s = b.add("Add", [t_s, b.add("MatMul", [spread_t, s_s])])
    total = b.add("Add", [b.add("Mul", [t_x, t_s]),
                          b.add("MatMul", [spread_t, b.add("Mul", [s_x, s_s])])])
    return [b.add("Concat", [head_x, b.add("Div", [total, out_s])], axis=_TOKEN_AXIS),
            b.add("Concat", [head_s, out_s], axis=_TOKEN_AXIS)]
