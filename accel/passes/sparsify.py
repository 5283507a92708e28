"""2:4 semi-structured sparsity: ``sparsify{pattern=2:4,method=magnitude|wanda|sparsegpt,
targets=mlp}``.

In every group of 4 consecutive input weights of a row, the 2 with the lowest score are
zeroed: ``|W_ij|`` (magnitude) or ``|W_ij|·‖X_j‖₂`` over the calibration inputs (Wanda), and
the kept weights are left as they were. ``sparsegpt`` (arXiv 2301.00774,
:mod:`accel.passes.common.gptq`) streams each linear input's ``K x K`` Hessian in one
calibration run (``sequential=true``: one run per layer, on the model already pruned before
it), then prunes column by column: each group's 2 are chosen by the OBS
saliency ``w² / [H⁻¹]_jj`` (inverse Hessian of the columns not yet visited) of the weights
as updated so far, and every pruned weight's error is compensated by updating the columns
not yet visited (``damp`` x mean-diagonal damping, blocks of ``block`` columns).
The pruned weight stays a dense ``linear`` weight annotated ``sparsity="2:4"``: the ``cuda``
target runs it through ``torch.sparse.to_sparse_semi_structured`` on sm80+ GPUs with
fp16/bf16 weights (see accel/backends/triton/kernels/sparse24.py); every other executor
multiplies the masked dense weight, and the lowering notes say so.
The record reports density and per-layer SQNR; one-shot 2:4 of a Gaussian weight keeps
~89% of a layer's output energy (~9.6 dB), so the collapse warning fires below 5 dB by
default.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
import torch.nn.functional as F

from accel.errors import AccelValueError
from accel.ir.graph import Graph
from accel.passes.common.gptq import sparsegpt_2_4
from accel.passes.common.linears import (
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

SparsityPattern = Literal["2:4"]
PruneMethod = Literal["magnitude", "wanda", "sparsegpt"]


def mask_n_m(score: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Boolean keep-mask of a ``[rows, K]`` score: the ``m - n`` largest of every ``m`` kept."""
    rows, k = score.shape
    groups = score.reshape(rows, k // m, m)
    drop = groups.topk(n, dim=2, largest=False).indices
    keep = torch.ones_like(groups, dtype=torch.bool).scatter_(2, drop, False)
    return keep.reshape(rows, k)


def _sparsegpt_solver(graph: Graph, damp: float, block: int) -> Solve:
    """SparseGPT of the linears reading one input, in one sweep of their stacked weights."""
    def solve(group: list, h: torch.Tensor, ws: list[torch.Tensor]
              ) -> list[tuple[tuple, torch.Tensor]]:
        dtype = graph.const(group[0].inputs[1]).dtype
        ws = [w.to(dtype) for w in ws]
        names = ", ".join(layer_label(n) for n in group)
        pruned, keep = sparsegpt_2_4(torch.cat(ws), h, damp=damp, block=block,
                                     name=f"pass 'sparsify' (sparsegpt) at {names}")
        rows = [w.shape[0] for w in ws]
        return [((p.clone(), k.clone()), p)
                for p, k in zip(pruned.split(rows), keep.split(rows), strict=True)]
    return solve


@register_pass("sparsify", lossy=True)
def sparsify(
    graph: Graph,
    ctx: PassContext,
    *,
    pattern: SparsityPattern = "2:4",
    method: PruneMethod = "magnitude",
    targets: LayerTargets = "all",
    exclude: list[str] = (),  # type: ignore[assignment]
    warn_below_db: float = 5.0,
    damp: float = 0.01,
    block: int = 128,
    sequential: bool = False,
    float_targets: bool = False,
) -> Graph:
    """Prune linears to 2:4 semi-structured sparsity (magnitude, Wanda or SparseGPT).

    ``damp``, ``block``, ``sequential`` and ``float_targets`` apply to ``sparsegpt`` only
    (Hessian damping as a fraction of its mean diagonal; columns per lazy-update block; each
    group of linears calibrated on the model with the earlier ones already pruned, one run
    per group; with ``float_targets`` each group aims at the float model's output from its
    pruned inputs, :func:`~accel.passes.common.linears.float_target_weight`: on MiniLM the
    best 2:4 measured, with ``damp=0.3`` against overfitting the calibration set).
    Calibration sees real tokens only when the graph has a padding mask."""
    if damp < 0 or block < 1:
        raise AccelValueError(f"pass 'sparsify': need damp >= 0 and block >= 1 (got "
                              f"damp={damp}, block={block})")
    nodes = [n for n in select_linears(graph, ctx, exclude, targets) if n.inputs[1].shape[1] % 4
             == 0]
    if not nodes:
        ctx.skip("no linear with constant weights and K divisible by 4 to sparsify")
        return graph
    batches = calibration_batches(ctx, "sparsify", required=method != "magnitude",
                                  why=f"method={method}")
    samples, hessians = calibrate_linears(ctx, graph, nodes, batches,
                                          hessians=method == "sparsegpt" and not sequential)
    swept, sweep_s, seq_s = {}, 0.0, 0.0
    if method == "sparsegpt":
        t0 = time.perf_counter()
        swept, seq_s = solve_in_order(graph, nodes, batches, hessians,
                                      _sparsegpt_solver(graph, damp, block), sequential,
                                      float_targets, damp)
        sweep_s = time.perf_counter() - t0 - seq_s
    rw = graph.rewriter()
    rw.pass_name = "sparsify"
    sqnr: dict[str, float] = {}
    kept = total = 0
    for n in nodes:
        w_val = n.inputs[1]
        w = graph.const(w_val)
        score = w.abs().float()
        if method == "wanda":
            sq = samples[n.inputs[0]].sq_sum
            if sq is None:
                raise AccelValueError(f"pass 'sparsify': no calibration activations reached "
                                      f"{n.name}; check the calibration data")
            score = score * sq.sqrt().unsqueeze(0)
        if method == "sparsegpt":
            pruned, keep = swept[n]
        else:
            keep = mask_n_m(score)
            pruned = torch.where(keep, w, torch.zeros((), dtype=w.dtype))
        kept += int(keep.sum())
        total += keep.numel()
        new_w = rw.const(pruned, f"{w_val.name}_{pattern.replace(':', 'of')}")
        new_w = rw.annotate(new_w, sparsity=pattern)
        bias = n.inputs[2] if len(n.inputs) > 2 else None
        b = graph.const(bias) if bias is not None else None
        if graph.num_uses(w_val) == 1:
            rw.replace(w_val, new_w)
        else:  # the weight is shared: only this linear reads the pruned copy
            rw.replace(n.output, rw.op("linear", n.inputs[0], new_w, bias,
                                       name=n.name + "_sparse", meta={**n.meta}))
        sqnr[layer_label(n)] = layer_sqnr(n, graph, samples[n.inputs[0]].sample(),
                                  lambda x, p=pruned, b=b: F.linear(x, p, b))
    new = rw.finish()
    density = kept / total
    ctx.metric("density", density)
    where = "semi-structured kernels where the CUDA executor supports them" \
        if ctx.target == "cuda" else "masked dense weights"
    ctx.note(f"{pattern} {method}: {len(nodes)} linear(s), density {density:.3f} of their "
             f"weights; runs as {where}")
    if method == "sparsegpt":
        ctx.metric("sparsegpt_s", sweep_s)
        if sequential:
            ctx.metric("sequential_calibration_s", seq_s)
        ctx.note(f"sparsegpt: damp {damp}, block {block}, sequential {sequential}: "
                 f"{sweep_s:.2f}s of column sweeps" +
                 (f", {seq_s:.2f}s of calibration runs between them" if sequential else ""))
    report_layer_sqnr(ctx, "sparsify", sqnr, warn_below_db)
    return new
