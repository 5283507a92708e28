"""RePaViT FFN reparameterization: collapse the idle (non-activated) channels of an MLP.

A RePaViT MLP splits fc1's hidden channels into activated ones (through GELU) and idle ones
(straight through), concatenated into fc2:

    y = fc2(cat(gelu(h[act]), h[idle])),   h = fc1(x)

The idle path is linear, so it collapses into one D×D linear:

    W_lin = W2[:, idle]·W1[idle, :],   b_lin = W2[:, idle]·b1[idle] + b2
    y = linear(x, W_lin, b_lin) + linear(gelu(linear(x, W1[act], b1[act])), W2[:, act])

When the MLP's output is added to the same ``x`` fc1 reads (``x + fc2(...)``), the residual
folds in too: W_lin + I. In a pre-norm block fc1 reads LN(x) while the residual is x, so the
residual add stays. Applied only when it lowers the multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from accel.ir.graph import Graph, Node, Rewriter, Value
from accel.passes.registry import PassContext, register_pass


@dataclass(frozen=True)
class IdleMlp:
    """A matched RePaViT MLP: fc1, fc2 and which hidden channels skip the activation."""

    fc1: Node
    fc2: Node
    act_hidden: list[int]
    """fc1 output channels that go through the activation..."""
    act_cols: list[int]
    """...and the fc2 input columns they land on."""
    idle_hidden: list[int]
    idle_cols: list[int]
    approximate: str
    """The GELU's ``approximate`` attribute."""


def _slice_of(graph: Graph, v: Value, h: Value | None) -> tuple[Node, Value] | None:
    p = graph.producer(v)
    if p is None or p.op != "slice" or graph.num_uses(v) != 1 or p.attrs["step"] != 1:
        return None
    if p.attrs["dim"] % len(p.inputs[0].shape) != len(p.inputs[0].shape) - 1:
        return None
    if h is not None and p.inputs[0] is not h:
        return None
    return p, p.inputs[0]


def match_idle_mlp(graph: Graph, fc2: Node) -> IdleMlp | None:
    """``fc2`` as the end of a RePaViT MLP, or None."""
    cat_v = fc2.inputs[0]
    cat = graph.producer(cat_v)
    if (fc2.op != "linear" or cat is None or cat.op != "concat" or graph.num_uses(cat_v) != 1
            or cat.attrs["dim"] % len(cat_v.shape) != len(cat_v.shape) - 1):
        return None
    h: Value | None = None
    act_h, act_c, idle_h, idle_c, approx = [], [], [], [], set()
    offset = 0
    for part in cat.inputs:
        node = graph.producer(part)
        is_act = node is not None and node.op == "gelu" and graph.num_uses(part) == 1
        found = _slice_of(graph, node.inputs[0] if is_act else part, h)
        if found is None:
            return None
        sl, h = found
        width = part.shape[-1]
        start = sl.attrs["start"] or 0
        hidden = list(range(start, start + width))
        cols = list(range(offset, offset + width))
        offset += width
        if is_act:
            approx.add(node.attrs["approximate"])
            act_h += hidden
            act_c += cols
        else:
            idle_h += hidden
            idle_c += cols
    fc1 = graph.producer(h) if h is not None else None
    if fc1 is None or fc1.op != "linear" or len(approx) > 1 or not idle_h:
        return None
    if graph.num_uses(h) != len(cat.inputs) or sorted(act_h + idle_h) != list(range(h.shape[-1])):
        return None
    consts = [v for n in (fc1, fc2) for v in n.inputs[1:] if v is not None]
    if not all(graph.is_const(v) for v in consts):
        return None
    return IdleMlp(fc1, fc2, act_h, act_c, idle_h, idle_c, approx.pop() if approx else "none")


def _weights(graph: Graph, node: Node) -> tuple[torch.Tensor, torch.Tensor]:
    w = graph.const(node.inputs[1]).double()
    b = node.inputs[2] if len(node.inputs) > 2 else None
    return w, graph.const(b).double() if b is not None else torch.zeros(w.shape[0],
                                                                        dtype=torch.float64)


def _residual_add(graph: Graph, mlp: IdleMlp) -> Node | None:
    """The ``add(x, fc2_out)`` whose other operand is fc1's own input, if any."""
    y, x = mlp.fc2.outputs[0], mlp.fc1.inputs[0]
    users = graph.users(y)
    if graph.num_uses(y) != 1 or users[0].op != "add":
        return None
    add = users[0]
    others = [v for v in add.inputs if v is not y]
    if len(others) != 1 or others[0] is not x or add.outputs[0].shape != y.shape:
        return None
    return add


def _collapse(graph: Graph, rw: Rewriter, mlp: IdleMlp) -> tuple[int, int] | None:
    """Rewrite one MLP; returns (multiply-adds per token before, after) or None if not cheaper."""
    w1, b1 = _weights(graph, mlp.fc1)
    w2, b2 = _weights(graph, mlp.fc2)
    d_out, hidden = w2.shape
    d_in, n_act = w1.shape[1], len(mlp.act_hidden)
    before, after = d_in * hidden + hidden * d_out, d_in * d_out + n_act * (d_in + d_out)
    if after >= before:
        return None
    w2_idle = w2[:, mlp.idle_cols]
    w_lin = w2_idle @ w1[mlp.idle_hidden]
    b_lin = w2_idle @ b1[mlp.idle_hidden] + b2
    x = mlp.fc1.inputs[0]
    add = _residual_add(graph, mlp) if d_in == d_out else None
    if add is not None:
        w_lin = w_lin + torch.eye(d_in, dtype=torch.float64)
    dtype = mlp.fc2.inputs[1].dtype
    name = mlp.fc2.name
    out = rw.op("linear", x, rw.const(w_lin.to(dtype), f"{name}_lin_weight"),
                rw.const(b_lin.to(dtype), f"{name}_lin_bias"), name=f"{name}_lin")
    if n_act:
        h = rw.op("linear", x, rw.const(w1[mlp.act_hidden].to(dtype), f"{name}_act1_weight"),
                  rw.const(b1[mlp.act_hidden].to(dtype), f"{name}_act1_bias"),
                  name=f"{name}_act1")
        h = rw.op("gelu", h, approximate=mlp.approximate)
        h = rw.op("linear", h, rw.const(w2[:, mlp.act_cols].to(dtype), f"{name}_act2_weight"),
                  name=f"{name}_act2")
        out = rw.op("add", out, h)
    rw.replace(add.outputs[0] if add is not None else mlp.fc2.outputs[0], out)
    return before, after


@register_pass("repavit")
def repavit(graph: Graph, ctx: PassContext) -> Graph:
    """Collapse the idle channels of RePaViT MLPs into one linear (plus the residual)."""
    rw = Rewriter(graph, pass_name="repavit")
    collapsed, skipped = 0, 0
    for node in graph.find("linear"):
        mlp = match_idle_mlp(graph, node)
        if mlp is None:
            continue
        if _collapse(graph, rw, mlp) is None:
            skipped += 1
            continue
        collapsed += 1
    if not collapsed:
        why = f" ({skipped} not cheaper)" if skipped else ""
        ctx.skip(f"no fc1 -> slice/gelu -> concat -> fc2 MLP with idle channels{why}")
        return graph
    new = rw.finish()
    ctx.note(f"collapsed {collapsed} MLP(s); FLOPs {graph.flops():,} -> {new.flops():,}")
    return new
