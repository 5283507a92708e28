"""SmoothQuant: move activation outliers into the weights before int8 quantization.

For a LayerNorm read by linears: ``s_j = max|X_j|^α / max|W_j|^(1−α)`` (activation max from
calibration, weight max over every linear sharing the LayerNorm), then LN weight and bias
``/= s`` and each linear's weight ``*= s`` per input channel: the float model is unchanged,
the activations are easier to quantize. When the LN output also feeds something else (the
residual of post-LN BERT), the scale goes into a ``mul`` on the branch to the linears.
"""

from __future__ import annotations

import torch

from accel.calibration import MinMaxObserver, calibrate
from accel.ir.graph import Graph, Node
from accel.passes.common.linears import calibration_batches, matches
from accel.passes.registry import PassContext, register_pass


def _smoothable(graph: Graph, ln: Node, exclude: list[str]) -> list[Node] | None:
    """The linears reading ``ln``'s output, when the LN's affine params are constants."""
    if len(ln.inputs) < 3 or not (graph.is_const(ln.inputs[1]) and graph.is_const(ln.inputs[2])):
        return None
    out = ln.output
    linears = [u for u in graph.users(out) if u.op == "linear" and u.inputs[0] is out
               and graph.is_const(u.inputs[1]) and not matches(u, exclude)]
    return linears or None


@register_pass("smoothquant", lossy=True)
def smoothquant(graph: Graph, ctx: PassContext, *, alpha: float = 0.5,
                exclude: list[str] = ()) -> Graph:  # type: ignore[assignment]
    """Fold SmoothQuant scales into LayerNorms and the linears that read them (calibrated)."""
    if not 0.0 <= alpha <= 1.0:
        from accel.errors import AccelValueError

        raise AccelValueError(f"pass 'smoothquant': alpha={alpha} must lie in [0, 1]")
    groups = {ln: lins for ln in graph.find("layer_norm")
              if (lins := _smoothable(graph, ln, list(exclude)))}
    if not groups:
        ctx.skip("no LayerNorm with constant affine feeding linears")
        return graph
    batches = calibration_batches(ctx, "smoothquant", required=True)
    stats = calibrate(graph, batches, {ln.output: MinMaxObserver() for ln in groups})
    rw = graph.rewriter()
    rw.pass_name = "smoothquant"
    folded = branched = 0
    for ln, lins in groups.items():
        x_max = stats[ln.output].channel_absmax.double().clamp_min(1e-5)
        w_max = torch.stack([graph.const(n.inputs[1]).double().abs().amax(0) for n in lins])
        w_max = w_max.amax(0).clamp_min(1e-5)
        s = (x_max.pow(alpha) / w_max.pow(1 - alpha)).clamp_min(1e-5)
        for n in lins:
            w = graph.const(n.inputs[1]).double() * s
            rw.replace(n.inputs[1], rw.const(w.float(), n.inputs[1].name + "_smooth"))
        only_linears = graph.num_uses(ln.output) == len(lins)
        if only_linears:
            ln_w, ln_b = graph.const(ln.inputs[1]).double(), graph.const(ln.inputs[2]).double()
            rw.replace(ln.inputs[1], rw.const((ln_w / s).float(), ln.inputs[1].name + "_smooth"))
            rw.replace(ln.inputs[2], rw.const((ln_b / s).float(), ln.inputs[2].name + "_smooth"))
            folded += 1
        else:
            inv = rw.const((1 / s).float(), f"{ln.name}_inv_smooth")
            scaled = rw.op("mul", ln.output, inv, name=f"{ln.name}_smoothed")
            for n in lins:
                rest = [v for v in n.inputs[1:]]
                new = rw.op("linear", scaled, *rest, name=n.name + "_s", meta={**n.meta})
                rw.replace(n.output, new)
            branched += 1
    ctx.note(f"smoothed {len(groups)} LayerNorm(s) (alpha={alpha}): {folded} folded into the "
             f"LN affine, {branched} via a scale on the branch to the linears")
    return rw.finish()
