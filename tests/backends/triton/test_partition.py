"""The partitioner: which nodes fuse into which kernel groups, and what is left to aten."""

from __future__ import annotations

import torch

from accel.backends.triton.kinds import BY_NAME, KINDS
from accel.backends.triton.partition import partition
from accel.frontend import capture
from accel.ir.graph import Graph, Rewriter
from accel.ir.types import TensorType
from accel.models import get_model


def _vit_graph() -> Graph:
    model, inputs = get_model("vit_small_test", depth=1)
    return capture(model, inputs)


def test_vit_block_groups() -> None:
    g = _vit_graph()
    groups = partition(g, KINDS)
    fused = [gr.describe() for gr in groups if gr.kind is not BY_NAME["aten"]]
    assert fused == [
        "pointwise add: add",
        "reduction layer_norm: layer_norm",
        "matmul linear: linear",
        "attention attention: attention",
        "matmul linear_1: linear + mul + add",
        "reduction layer_norm_1: layer_norm",
        "matmul linear_2: linear + gelu",
        "matmul linear_3: linear + mul + add",
        "reduction layer_norm_2: layer_norm",
        "matmul linear_4: linear",
    ]
    aten = sorted({gr.nodes[0].op for gr in groups if gr.kind is BY_NAME["aten"]})
    assert aten == ["concat", "conv", "permute", "reshape", "select"]


def test_partition_covers_every_node_once_in_executable_order() -> None:
    g = _vit_graph()
    groups = partition(g, KINDS)
    nodes = [n for gr in groups for n in gr.nodes]
    assert sorted(n.name for n in nodes) == sorted(n.name for n in g.nodes)
    ready = set(g.inputs) | set(g.constants)
    for gr in groups:
        assert all(v in ready for v in gr.inputs), gr.describe()
        ready |= {o for n in gr.nodes for o in n.outputs}
    assert set(g.outputs) <= ready


def _build(build, shapes: dict[str, tuple[int, ...]]) -> Graph:  # noqa: ANN001
    rw = Rewriter()
    xs = {k: rw.add_input(k, TensorType(s, torch.float32)) for k, s in shapes.items()}
    rw.set_outputs(build(rw, **xs))
    return rw.finish("t")


def test_multi_use_value_ends_a_chain() -> None:
    def build(rw, x):  # noqa: ANN001, ANN202
        y = rw.op("relu", rw.op("neg", x))
        return [rw.op("sigmoid", rw.op("exp", y)), rw.op("softmax", y, dim=-1)]

    groups = partition(_build(build, {"x": (4, 8)}), KINDS)
    assert [(g.kind, [n.op for n in g.nodes]) for g in groups] == [
        (BY_NAME["pointwise"], ["neg", "relu"]),
        (BY_NAME["pointwise"], ["exp", "sigmoid"]),
        (BY_NAME["reduction"], ["softmax"]),
    ]
    assert [o.name for o in groups[0].outputs] == ["relu"]


def test_reduction_takes_single_use_prologue_and_not_other_dims() -> None:
    def build(rw, x, y):  # noqa: ANN001, ANN202
        s = rw.op("softmax", rw.op("mul", x, y), dim=-1)
        return [rw.op("sum", s, dims=(0,)), rw.op("mean", x, dims=(-1,))]

    groups = partition(_build(build, {"x": (4, 8), "y": (8,)}), KINDS)
    kinds = [(g.kind, tuple(n.op for n in g.nodes)) for g in groups]
    assert (BY_NAME["reduction"], ("mul", "softmax")) in kinds
    assert (BY_NAME["aten"], ("sum",)) in kinds  # not over the last dim
    assert (BY_NAME["reduction"], ("mean",)) in kinds


def test_epilogue_stops_at_shape_change_and_bool_attention_bias_goes_to_aten() -> None:
    def build(rw, x, w, q, m):  # noqa: ANN001, ANN202
        y = rw.op("relu", rw.op("matmul", x, w))
        z = rw.op("add", y, rw.op("sum", x, dims=(-1,), keepdim=True))
        att = rw.op("attention", q, q, q, rw.op("cast", m, dtype=torch.bool), scale=None,
                    causal=False)
        return [z, att]

    g = _build(build, {"x": (2, 3, 4), "w": (4, 4), "q": (1, 2, 5, 8), "m": (1, 1, 5, 5)})
    groups = partition(g, KINDS)
    mm = next(gr for gr in groups if gr.kind is BY_NAME["matmul"])
    # the add reads a value computed after the matmul: it cannot join the epilogue
    assert [n.op for n in mm.nodes] == ["matmul", "relu"]
    att = next(gr for gr in groups if any(n.op == "attention" for n in gr.nodes))
    assert att.kind is BY_NAME["aten"]
