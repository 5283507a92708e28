"""What the lossy linear passes share: which linears to rewrite, the calibration inputs, and
the per-layer SQNR of a rewritten linear against the float one (quantize, smoothquant,
sparsify)."""

from __future__ import annotations

import fnmatch
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from accel.calibration import (
    CrossHessianObserver,
    HessianObserver,
    SampleObserver,
    calibrate,
    calibrate_paired,
    sqnr_db,
)
from accel.errors import AccelValueError
from accel.ir.graph import Graph, Node, Value
from accel.ir.ops import OpKind
from accel.passes.common.padding import padding_mask_or_none
from accel.passes.registry import PassContext

LayerTargets = Literal["all", "mlp", "attention"]

SQNR_COLLAPSE_DB = 10.0
"""A rewritten layer whose SQNR falls below this many dB triggers a warning."""


def matches(node: Node, patterns: Sequence[str]) -> bool:
    """Whether ``node``'s name, op or source module path matches a glob in ``patterns``."""
    keys = (node.name, node.op, str(node.meta.get("source", "")))
    return any(fnmatch.fnmatchcase(k, p) for p in patterns for k in keys if k)


def _through_shape_ops(graph: Graph, value: Value, forward: bool, hit: Callable[[Node], bool],
                       depth: int = 8) -> bool:
    """Whether ``value`` reaches (forward) / comes from (backward) a node ``hit`` accepts,
    passing only through data-movement ops."""
    if depth == 0:
        return False
    if forward:
        for u in graph.users(value):
            if hit(u) or (u.opdef.kind is OpKind.SHAPE and any(
                    _through_shape_ops(graph, o, True, hit, depth - 1) for o in u.outputs)):
                return True
        return False
    p = graph.producer(value)
    if p is None:
        return False
    if hit(p):
        return True
    return p.opdef.kind is OpKind.SHAPE and p.inputs[0] is not None and \
        _through_shape_ops(graph, p.inputs[0], False, hit, depth - 1)


def is_attention_projection(graph: Graph, node: Node) -> bool:
    """A linear making q/k/v for attention, or projecting attention's output."""
    attn = lambda n: n.op == "attention" or (n.op == "matmul" and n is not node)  # noqa: E731
    return _through_shape_ops(graph, node.output, True, attn) or \
        _through_shape_ops(graph, node.inputs[0], False, attn)


def select_linears(graph: Graph, ctx: PassContext, exclude: Sequence[str],
                   targets: LayerTargets = "all") -> list[Node]:
    """Linears with constant 2-d weights (and bias), minus excluded ones; notes what it left."""
    chosen, skipped = [], []
    for n in graph.find("linear"):
        w = n.inputs[1]
        b = n.inputs[2] if len(n.inputs) > 2 else None
        if not graph.is_const(w) or w.type.rank != 2 or (b is not None and not graph.is_const(b)):
            continue
        if matches(n, exclude):
            skipped.append(n.name)
            continue
        if targets != "all" and is_attention_projection(graph, n) != (targets == "attention"):
            skipped.append(n.name)
            continue
        chosen.append(n)
    if skipped:
        ctx.note(f"left {len(skipped)} linear(s) float: {_short(skipped)}")
    return chosen


def _short(names: Sequence[str], k: int = 6) -> str:
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def calibration_batches(ctx: PassContext, pass_name: str, required: bool, why: str = ""
                        ) -> list[tuple[torch.Tensor, ...]]:
    """The calibration batches, or the example inputs when calibration is optional.

    ``why`` names the option that needs the data (``method=gptq``) in the error."""
    if ctx.calibration:
        return list(ctx.calibration)
    if required:
        reason = f" ({why})" if why else ""
        raise AccelValueError(f"pass '{pass_name}'{reason} needs calibration data: call "
                              "accel.compile(..., calibration=[example inputs, ...])")
    ctx.note("no calibration data: layer SQNR measured on the example inputs")
    return [tuple(ctx.example_inputs)]


def sample_linear_inputs(graph: Graph, nodes: Sequence[Node],
                         batches: Sequence[tuple[torch.Tensor, ...]], extra: dict | None = None,
                         token_mask: Value | None = None) -> dict[Value, SampleObserver]:
    """Run calibration, keeping a sample of each chosen linear's input activations
    (real-token rows only when ``token_mask`` is given, see :func:`calibrate`)."""
    observers: dict[Value, list] = {}
    samples: dict[Value, SampleObserver] = {}
    for n in nodes:
        x = n.inputs[0]
        if x not in samples:
            samples[x] = SampleObserver()
            observers[x] = [samples[x]]
    for v, obs in (extra or {}).items():
        observers.setdefault(v, []).extend(obs if isinstance(obs, list) else [obs])
    if observers:
        calibrate(graph, batches, observers, token_mask=token_mask)
    return samples


def calibrate_linears(ctx: PassContext, graph: Graph, nodes: Sequence[Node],
                      batches: Sequence[tuple[torch.Tensor, ...]], hessians: bool = False,
                      extra: dict | None = None,
                      ) -> tuple[dict[Value, SampleObserver], dict[Value, HessianObserver]]:
    """:func:`sample_linear_inputs`, plus (``hessians=True``) one streamed ``[K, K]``
    Hessian per distinct linear input (q/k/v projections of a block share one).

    The wall time of the calibration run and the memory the observers hold at its end
    (Hessians and samples: what calibration keeps, bounded by ``K x K`` floats per input
    plus 2048 sampled rows) go in the pass record (``calibration_s``,
    ``calibration_state_mb``); the interpreter's transient activations are not counted.

    When the graph has a provable padding mask (:func:`~accel.passes.common.padding.
    find_padding_mask`: a text encoder called with its attention mask), every observer sees
    the real tokens' rows only: padded rows would enter each Hessian and activation norm
    with the weight of a real token although no output reads them.
    """
    mask = padding_mask_or_none(graph)
    hess = {n.inputs[0]: HessianObserver() for n in nodes} if hessians else {}
    more = {v: [h] for v, h in hess.items()}
    for v, obs in (extra or {}).items():
        more.setdefault(v, []).extend(obs if isinstance(obs, list) else [obs])
    t0 = time.perf_counter()
    samples = sample_linear_inputs(graph, nodes, batches, more, token_mask=mask)
    seconds = time.perf_counter() - t0
    state = sum(h.hessian().nbytes for h in hess.values() if h.h is not None) + sum(
        sum(r.nbytes for r in s.rows) for s in samples.values())
    ctx.metric("calibration_s", seconds)
    ctx.metric("calibration_state_mb", state / 1e6)
    what = f"{len(hess)} Hessian(s) and input samples" if hessians else "input samples"
    rows = next((h.rows for h in hess.values()), None)
    real = f", real tokens only (padding mask {mask.name})" if mask is not None else ""
    ctx.note(f"calibration: {len(batches)} batch(es){real}, {what} of {len(nodes)} linear(s) "
             f"in {seconds:.2f}s, {state / 1e6:.1f} MB held" +
             (f", {rows} rows per Hessian" if rows else ""))
    return samples, hess


def by_input(nodes: Sequence[Node]) -> dict[Value, list[Node]]:
    """The chosen linears grouped by the value they read (a block's q, k and v share one).

    GPTQ and SparseGPT treat weight rows independently given the input's Hessian, so the
    weights of one group can be stacked along N and swept once."""
    groups: dict[Value, list[Node]] = {}
    for n in nodes:
        groups.setdefault(n.inputs[0], []).append(n)
    return groups


Solve = Callable[[list[Node], torch.Tensor, list[torch.Tensor]],
                 list[tuple[tuple, torch.Tensor]]]
"""``(linears reading one input, that input's Hessian, the float weights to compress) ->
[(result, float weight)]`` per linear: what the pass stores, and the float weight it stands
for (dequantized, pruned)."""


def float_target_weight(w: torch.Tensor, h: torch.Tensor, c: torch.Tensor, damp: float
                        ) -> torch.Tensor:
    """The weight ``W′`` whose output on the compressed model's inputs ``X̂`` best matches
    the float layer's output on the float inputs ``X``: ``argmin ‖XWᵀ − X̂W′ᵀ‖²``.

    With ``H = X̂ᵀX̂`` and ``C = XᵀX̂`` (both ×2/n, :class:`~accel.calibration.
    CrossHessianObserver`), ``W′ = W·C·H⁻¹ = W + W·(C − H)·H⁻¹``; the second form is used,
    with ``H`` damped like GPTQ's (``damp`` × mean diagonal), so that ``W′ = W`` exactly
    when the inputs are unchanged. Compressing ``W′`` against ``H`` then minimises the
    layer's error against the float model's output, not against its own perturbed output:
    ``‖XWᵀ − X̂Ŵᵀ‖² = ‖X̂(Ŵ − W′)ᵀ‖² + const`` (GPTQv2's asymmetric calibration, arXiv
    2504.02692, here as a correction before the sweep)."""
    h64, c64, w64 = h.double(), c.double(), w.double()
    hd = h64.clone()
    hd.diagonal().add_(damp * torch.diag(h64).mean() + 1e-12)
    chol, info = torch.linalg.cholesky_ex(hd)
    if info.item() != 0:
        return w
    delta = torch.cholesky_solve((c64 - h64).t() @ w64.t(), chol).t()
    return (w64 + delta).to(w.dtype)


def solve_in_order(graph: Graph, nodes: Sequence[Node],
                   batches: Sequence[tuple[torch.Tensor, ...]],
                   hessians: dict[Value, HessianObserver], solve: Solve, sequential: bool,
                   float_targets: bool = False, damp: float = 0.01,
                   ) -> tuple[dict[Node, tuple], float]:
    """Run ``solve`` on each group of linears sharing an input, in graph order; returns the
    results and the seconds spent in extra calibration runs.

    Not ``sequential``: every group uses the float model's Hessians (``hessians``, from the
    one calibration run). ``sequential`` (GPTQ's and SparseGPT's own procedure): each
    group's Hessian is collected on the model in which every earlier group already has its
    compressed weight, so a layer also compensates the error of the layers before it; this
    costs one calibration run per group (real tokens only, as :func:`calibrate_linears`).
    ``float_targets`` (with ``sequential``): the layer aims at the float model's output
    rather than at its own output on the perturbed inputs (:func:`float_target_weight`);
    each run then also runs the float model, to pair its inputs with the compressed one's.
    """
    token_mask = padding_mask_or_none(graph) if sequential else None
    out: dict[Node, tuple] = {}
    current, seconds = graph, 0.0
    for x, group in by_input(nodes).items():
        h = hessians.get(x)
        weights = [graph.const(n.inputs[1]).float() for n in group]
        if sequential:
            t0 = time.perf_counter()
            desc = f"calibrating {group[0].name}"
            if float_targets and current is not graph:
                cross = calibrate_paired(graph, current, batches, x, CrossHessianObserver(),
                                         desc, token_mask=token_mask)
                h = cross.own
                weights = [float_target_weight(w, cross.hessian(), cross.cross(), damp)
                           for w in weights]
            else:
                h = HessianObserver()
                calibrate(current, batches, {x: h}, desc=desc, token_mask=token_mask)
            seconds += time.perf_counter() - t0
        assert h is not None, "solve_in_order: no Hessian for a group (calibrate first)"
        solved = solve(group, h.hessian(), weights)
        out.update({n: result for n, (result, _) in zip(group, solved, strict=True)})
        if sequential:
            rw = current.rewriter()
            for n, (_, w_float) in zip(group, solved, strict=True):
                w_val = n.inputs[1]
                if w_val in current.constants:  # (a weight shared with an earlier group: done)
                    w = rw.const(w_float.to(current.constants[w_val].dtype), f"{w_val.name}_seq")
                    rw.replace(w_val, w)
            current = rw.finish()
    return out, seconds


def layer_label(node: Node) -> str:
    """``node`` name with its source module path, for reports and warnings."""
    src = node.meta.get("source")
    return f"{node.name} ({src})" if src else node.name


def report_layer_sqnr(ctx: PassContext, pass_name: str, sqnr: dict[str, float],
                      warn_below_db: float = SQNR_COLLAPSE_DB) -> None:
    """Put per-layer SQNR in the pass record (worst layers, min, mean); warn on collapse."""
    if not sqnr:
        return
    worst = sorted(sqnr.items(), key=lambda kv: kv[1])
    finite = [v for v in sqnr.values() if math.isfinite(v)]
    ctx.metric("min_layer_sqnr_db", worst[0][1])
    ctx.metric("mean_layer_sqnr_db", sum(finite) / len(finite) if finite else math.inf)
    ctx.note("worst layer SQNR: " + ", ".join(f"{k} {v:.1f} dB" for k, v in worst[:3]))
    collapsed = [f"{k}: {v:.1f} dB" for k, v in worst if v < warn_below_db]
    ctx.metric("collapsed_layers", len(collapsed))  # read by the end-to-end check
    if collapsed:
        warnings.warn(f"accel: pass '{pass_name}': output SQNR of {_short(collapsed)} fell "
                      f"below {warn_below_db:g} dB; exclude these layers "
                      f"({pass_name}{{exclude=[...]}}) or use a milder mode", stacklevel=2)


def layer_sqnr(node: Node, graph: Graph, x: torch.Tensor,
               approx: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """SQNR of ``approx(x)`` against the float linear ``node`` on input rows ``x`` (the
    reference in float32, whatever the model's dtype; ``approx`` gets rows in the linear's
    own dtype)."""
    w = graph.const(node.inputs[1])
    b = graph.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    x = x.to(w.dtype)
    with torch.no_grad():
        ref = F.linear(x.float(), w.float(), b.float() if b is not None else None)
        return sqnr_db(ref, approx(x).float())
