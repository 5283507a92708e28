"""Post-training quantization of linears: ``quantize{mode=int8-dynamic|int8-static|
int8-weight-only|int4-weight-only, method=rtn|gptq, exclude=[head,*attn*]}``.

Weights are quantized symmetrically per output channel (per group for weight-only int4);
activations at run time (``int8-dynamic``, per token or ``act=per-tensor``) or per tensor
from calibration (``int8-static``). Each rewritten linear's output is compared with the
float linear on the calibration data (per-layer SQNR, worst layers in the report; a collapse warns).

Weight-only modes round to nearest (``method=rtn``) or run GPTQ (``method=gptq``,
:mod:`accel.passes.common.gptq`): one calibration run streams each linear input's ``K x K``
Hessian, then every linear's weight is quantized column by column with second-order error
compensation (``damp``, ``act_order``, ``block``). By default all Hessians come from the
float model in that one run; ``sequential=true`` re-collects each layer's Hessian on the
model whose earlier layers are already quantized (GPTQ's own procedure: one calibration run
per group of linears sharing an input). GPTQ writes the same ``linear_weight_only`` op and
format as RTN (int8 values, float32 scales per row or group, and with ``grid=asymmetric``,
int4's default, int8 zero points per group: the weight is ``(q − z)·s``), so the ONNX
lowering (Cast·Sub·Mul·MatMul) and every executor run it unchanged.

A weight annotated ``sparsity="2:4"`` (from ``sparsify``) keeps its zeros, in the stored
integers too (so that a semi-structured int kernel can read them): its grid is always
symmetric (an asymmetric grid stores 0 as its zero point), RTN maps 0 to 0, GPTQ is given
the weight's nonzero pattern as a fixed mask (quantize, then re-apply the mask; the error
propagates to the later columns, see :mod:`accel.passes.common.gptq`), and the
quantized weight keeps the annotation.

What runs on CPU: ``linear_weight_only`` dequantizes the weight (int8 -> float, times the
group scales) and runs a float matmul, on the aten executor each call and in ONNX as
Cast·Mul·MatMul. So weight-only quantization saves weight storage (int4 is stored as int8
values here: 4x smaller than float32 with scales, not 8x) but not time: each call pays the
dequantization of every weight (about one extra pass over the weights) on top of the float
matmul. GPTQ changes only the values, not this cost; it costs compile time instead (the
calibration run and one Cholesky plus a column sweep per layer, in the report).

The helpers the lossy linear passes share (layer selection, SQNR report) live in
:mod:`accel.passes.common.linears`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import torch

from accel.calibration import HistogramObserver, MinMaxObserver
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.ir.ops.quant import (
    dequantize_weight,
    quantize_grouped,
    quantize_per_channel,
    weight_row_sums,
)
from accel.passes.common.gptq import gptq, group_grid, quantize_cols
from accel.passes.common.linears import (
    SQNR_COLLAPSE_DB,
    LayerTargets,
    Solve,
    calibrate_linears,
    calibration_batches,
    layer_label,
    layer_sqnr,
    report_layer_sqnr,
    select_linears,
    solve_in_order,
)
from accel.passes.registry import PassContext, register_pass

QuantMode = Literal["int8-dynamic", "int8-static", "int8-weight-only", "int4-weight-only"]
ObserverKind = Literal["minmax", "percentile", "entropy"]
ActGranularity = Literal["per-token", "per-tensor"]
WeightMethod = Literal["rtn", "gptq"]
ScaleSearch = Literal["auto", "absmax", "mse"]
WeightGrid = Literal["auto", "symmetric", "asymmetric"]
WEIGHT_ONLY = ("int8-weight-only", "int4-weight-only")


def largest_divisor(k: int, limit: int) -> int:
    """The largest divisor of ``k`` not above ``limit``."""
    return max(d for d in range(1, min(k, max(limit, 1)) + 1) if k % d == 0)


@register_pass("quantize", lossy=True)
def quantize(
    graph: Graph,
    ctx: PassContext,
    *,
    mode: QuantMode = "int8-dynamic",
    exclude: list[str] = (),  # type: ignore[assignment]
    targets: LayerTargets = "all",
    group_size: int = 128,
    observer: ObserverKind = "percentile",
    percentile: float = 99.99,
    warn_below_db: float = SQNR_COLLAPSE_DB,
    act: ActGranularity = "per-token",
    method: WeightMethod = "rtn",
    damp: float = 0.01,
    act_order: bool = False,
    block: int = 128,
    sequential: bool = False,
    scale_search: ScaleSearch = "auto",
    grid: WeightGrid = "auto",
    float_targets: bool = False,
) -> Graph:
    """Quantize linears to int8/int4 (weights per channel; activations dynamic or static).

    ``act`` (int8-dynamic only): ``per-token`` (default) scales each row of the activations,
    accurate on activations with outlier tokens (MiniLM embedding cosine 0.999 vs 0.994);
    ``per-tensor`` lowers to onnxruntime's fused DynamicQuantizeMatMul kernel, the fastest
    CPU path (4-5x faster than per-token on MiniLM/ViT-S), and is what the ``fast`` and
    ``fastest`` presets use.

    ``method`` (weight-only modes): ``rtn`` rounds each weight to nearest; ``gptq`` needs
    calibration data and compensates each rounding error in the weights not yet quantized,
    with the Hessian damped by ``damp`` x its mean diagonal, columns in blocks of ``block``
    and, with ``act_order``, visited by descending Hessian diagonal. int4 groups are
    ``group_size`` input channels (the largest divisor of K not above it; the report notes a
    change), int8-weight-only has one scale per output channel. ``sequential`` (gptq):
    each group of linears gets the Hessian of its input on the model whose earlier linears
    are already quantized (one calibration run per group of linears sharing an input).
    ``grid`` and ``scale_search`` (weight-only modes, rtn and gptq;
    :func:`~accel.passes.common.gptq.group_grid`): ``symmetric`` groups store ``q·s``,
    ``asymmetric`` ones ``(q − z)·s`` with a per-group int8 zero point (the levels span the
    group's [min, max] instead of ±max|w|); a group's range is its full range (``absmax``)
    or the clip of it with the least rounding error (``mse``, 26 ratios from 1.0 to 0.5).
    ``auto``: asymmetric with ``mse`` for int4 (on MiniLM's real weights, GPTQ g128 min
    embedding cosine 0.980 vs 0.966 symmetric/absmax; RTN 0.948 vs 0.911), symmetric with
    ``absmax`` for int8 (already at 0.9996). ``float_targets`` (gptq with ``sequential``):
    each layer aims at the float model's output from its perturbed inputs
    (:func:`~accel.passes.common.linears.float_target_weight`).
    """
    if method == "gptq" and mode not in WEIGHT_ONLY:
        raise AccelValueError(f"pass 'quantize': method=gptq applies to the weight-only modes "
                              f"({', '.join(WEIGHT_ONLY)}), not mode={mode}; use method=rtn")
    if damp < 0 or block < 1 or group_size < 1:
        raise AccelValueError(f"pass 'quantize': need damp >= 0, block >= 1 and group_size >= "
                              f"1 (got damp={damp}, block={block}, group_size={group_size})")
    int4 = mode == "int4-weight-only"
    if grid == "auto":
        grid = "asymmetric" if int4 else "symmetric"
    if scale_search == "auto":
        scale_search = "mse" if int4 else "absmax"
    nodes = select_linears(graph, ctx, exclude, targets)
    if not nodes:
        ctx.skip("no linear with constant weights to quantize")
        return graph
    static = mode == "int8-static"
    use_gptq = method == "gptq"
    batches = calibration_batches(ctx, "quantize", required=static or use_gptq,
                                  why="method=gptq" if use_gptq else f"mode={mode}")
    stats: dict[Value, object] = {}
    if static:
        make = MinMaxObserver if observer == "minmax" else HistogramObserver
        stats = {n.inputs[0]: make() for n in nodes}
    samples, hessians = calibrate_linears(ctx, graph, nodes, batches,
                                          hessians=use_gptq and not sequential,
                                          extra={v: [o] for v, o in stats.items()})
    bits = 8 if mode == "int8-weight-only" else 4
    swept, sweep_s, seq_s = {}, 0.0, 0.0
    if use_gptq:
        t0 = time.perf_counter()
        swept, seq_s = solve_in_order(
            graph, nodes, batches, hessians,
            _gptq_solver(graph, bits, group_size, damp, block, act_order, scale_search,
                         grid == "symmetric"),
            sequential, float_targets, damp)
        sweep_s = time.perf_counter() - t0 - seq_s
    regrouped: list[str] = []

    rw = graph.rewriter()
    rw.pass_name = "quantize"
    sqnr: dict[str, float] = {}
    bytes_before = bytes_after = 0
    for n in nodes:
        x, w_val = n.inputs[0], n.inputs[1]
        bias = n.inputs[2] if len(n.inputs) > 2 else None
        w = graph.const(w_val).float()
        sparse_w = bool(w_val.annotations.get("sparsity"))  # its stored zeros must stay 0
        attrs: dict = {}
        if mode in ("int8-dynamic", "int8-static"):
            w_q, scales = quantize_per_channel(w, axis=0)
            zeros = None
            op = "linear_int8_dynamic" if mode == "int8-dynamic" else "linear_int8_static"
            if static:
                attrs = _activation_qparams(stats[x], observer, percentile)
            else:
                attrs = {"act": act}
        else:
            gs = _group(bits, w.shape[1], group_size)
            if bits == 4 and gs != min(group_size, w.shape[1]):
                regrouped.append(f"{n.name} (K={w.shape[1]}): {gs}")
            if use_gptq:
                w_q, scales, zeros = swept[n]
            elif scale_search == "absmax" and (grid == "symmetric" or sparse_w):
                w_q, scales = quantize_grouped(w, bits, gs or w.shape[1])  # 0 stays 0
                zeros = None
            else:
                w_q, scales, zeros = _rtn_grid(w, bits, gs or w.shape[1], scale_search,
                                               grid == "symmetric" or sparse_w)
            op, attrs = "linear_weight_only", {"bits": bits, "group_size": gs}
        bytes_before += w.numel() * 4
        bytes_after += w_q.numel() * (0.5 if mode == "int4-weight-only" else 1) + \
            scales.numel() * 4
        wq_v = rw.const(w_q, f"{w_val.name}_q")
        s_v = rw.const(scales, f"{w_val.name}_scale")
        quant = {"mode": mode, "axis": 0, "bits": attrs.get("bits", 8)}
        if mode in WEIGHT_ONLY:
            quant["method"] = method
        if zeros is not None:
            quant["zero_point"] = True
        sparse = w_val.annotations.get("sparsity")  # zeros quantize to zeros in every mode
        rw.annotate(wq_v, quant=quant, **({"sparsity": sparse} if sparse else {}))
        extra = []
        if mode == "int8-dynamic":  # precomputed zero-point correction
            extra = [rw.const(weight_row_sums(w_q), f"{w_val.name}_q_sum")]
        if zeros is not None:
            extra = [rw.const(zeros, f"{w_val.name}_zero")]
            bytes_after += zeros.numel() * (0.5 if bits == 4 else 1)
        qnode = rw.node(op, x, wq_v, s_v, bias, *extra, name=f"{n.name}_q", meta={**n.meta},
                        **attrs)
        rw.replace(n.output, qnode.output)
        run_q = _runner(qnode, graph, rw)
        sqnr[layer_label(n)] = layer_sqnr(n, graph, samples[x].sample(), run_q)
    new = rw.finish()
    how = f" ({method})" if mode in WEIGHT_ONLY else ""
    ctx.note(f"{mode}{how}: {len(nodes)} linear(s); weights {bytes_before / 1e6:.2f} MB -> "
             f"{bytes_after / 1e6:.2f} MB")
    if regrouped:
        ctx.note(f"group_size {group_size} does not divide K: used the largest divisor below "
                 f"it for {', '.join(regrouped[:4])}" + (" ..." if len(regrouped) > 4 else ""))
    if use_gptq:
        ctx.metric("gptq_s", sweep_s)
        if sequential:
            ctx.metric("sequential_calibration_s", seq_s)
        ctx.note(f"gptq: damp {damp}, block {block}, act_order {act_order}, scale search "
                 f"{scale_search}, sequential "
                 f"{sequential}: {sweep_s:.2f}s of column sweeps" +
                 (f", {seq_s:.2f}s of calibration runs between them" if sequential else ""))
    report_layer_sqnr(ctx, "quantize", sqnr, warn_below_db)
    return new


def _group(bits: int, k: int, group_size: int) -> int:
    """The ``group_size`` attribute of a weight-only linear: 0 (per row) for int8, else the
    largest divisor of K not above the requested size."""
    return 0 if bits == 8 else largest_divisor(k, group_size)


def _rtn_grid(w: torch.Tensor, bits: int, group_size: int, search: str, symmetric: bool
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Round to nearest on each group's grid from :func:`group_grid`: ``(q, scales, zeros)``
    (``zeros`` ``None`` when symmetric)."""
    n, k = w.shape
    grids = [group_grid(w[:, j:j + group_size], None, bits, search, symmetric)
             for j in range(0, k, group_size)]
    scales = torch.stack([s for s, _ in grids], dim=1)
    zeros = torch.stack([z for _, z in grids], dim=1)
    q = quantize_cols(w.reshape(n, -1, group_size), scales.unsqueeze(2), zeros.unsqueeze(2),
                      bits)
    return (q.reshape(n, k).to(torch.int8), scales.float(),
            None if symmetric else zeros.to(torch.int8))


def _gptq_solver(graph: Graph, bits: int, group_size: int, damp: float, block: int,
                 act_order: bool, scale_search: str = "absmax", symmetric: bool = True
                 ) -> Solve:
    """GPTQ of the linears reading one input, in one sweep: their stacked weights share the
    input's Hessian (GPTQ treats rows independently). A weight annotated ``sparsity`` keeps
    its nonzero pattern as a fixed mask."""
    def solve(group: list[Node], h: torch.Tensor, ws: list[torch.Tensor]
              ) -> list[tuple[tuple, torch.Tensor]]:
        masks = [(graph.const(n.inputs[1]) != 0) if n.inputs[1].annotations.get("sparsity")
                 else None for n in group]
        keep = None if all(m is None for m in masks) else torch.cat(
            [torch.ones_like(w, dtype=torch.bool) if m is None else m
             for w, m in zip(ws, masks, strict=True)])
        gs = _group(bits, ws[0].shape[1], group_size)
        names = ", ".join(layer_label(n) for n in group)
        sym = symmetric or keep is not None  # a 2:4 weight's stored zeros stay 0
        q, s, z = gptq(torch.cat(ws), h, bits=bits, group_size=gs, damp=damp, block=block,
                    act_order=act_order, keep=keep, name=f"pass 'quantize' (gptq) at {names}",
                    scale_search=scale_search, symmetric=sym)
        rows = [w.shape[0] for w in ws]
        zs = z.split(rows) if z is not None else [None] * len(rows)
        return [((qi.clone(), si.clone(), None if zi is None else zi.clone()),
                 dequantize_weight(qi, si, gs or qi.shape[1], zi))
                for qi, si, zi in zip(q.split(rows), s.split(rows), zs, strict=True)]
    return solve


def _runner(node: Node, graph: Graph, rw: Rewriter) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> node(x)`` with the node's other inputs taken from the constants."""
    consts = [None if v is None else rw.constants.get(v, graph.constants.get(v))
              for v in node.inputs[1:]]
    return lambda x: node.opdef.ref(x, *consts, **node.attrs)


def _activation_qparams(obs: object, observer: ObserverKind, percentile: float) -> dict:
    """Per-tensor int8 scale and zero point from calibration statistics."""
    if isinstance(obs, MinMaxObserver):
        lo, hi = min(obs.min, 0.0), max(obs.max, 0.0)
        scale = max(hi - lo, 1e-8) / 255
        zero_point = int(max(-128, min(127, round(-128 - lo / scale))))
        return {"x_scale": float(scale), "x_zero_point": zero_point}
    assert isinstance(obs, HistogramObserver)
    clip = obs.percentile(percentile) if observer == "percentile" else obs.entropy_threshold()
    return {"x_scale": float(max(clip, 1e-8) / 127), "x_zero_point": 0}
