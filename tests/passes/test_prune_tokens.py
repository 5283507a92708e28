"""EViT-style token pruning: graph shape, numerics vs a plain-torch reference, schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accel.errors import AccelValueError
from accel.frontend import capture
from accel.ir.graph import Graph
from accel.models import get_model
from accel.passes.pipeline import parse_pipeline
from accel.passes.prune_tokens import prune_plan, prune_tokens
from accel.passes.registry import PassContext
from accel.testing import run_graph


def _ref_evit_forward(model, img: torch.Tensor, plan: dict[int, int]) -> torch.Tensor:  # noqa: ANN001
    """Built-in ViT with EViT pruning written out in plain torch (per-sample loops)."""
    x = model.patch_embed(img).flatten(2).transpose(1, 2)
    x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], 1) + model.pos_embed
    for i, blk in enumerate(model.blocks):
        att = blk.attn
        b, n, c = x.shape
        qkv = att.qkv(blk.norm1(x)).reshape(b, n, 3, att.heads, att.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)
        x = x + blk.ls1(att.proj(o.transpose(1, 2).reshape(b, n, c)))
        if i in plan:
            cls_attn = ((q[:, :, :1] @ k.transpose(-1, -2)) * att.head_dim**-0.5).softmax(-1)
            cls_attn = cls_attn.mean((1, 2))[:, 1:]  # [B, N-1]
            rows = []
            for s in range(b):
                order = cls_attn[s].argsort(descending=True)
                kept, dropped = order[: plan[i]].sort().values, order[plan[i]:]
                w = cls_attn[s, dropped]
                fused = (x[s, 1:][dropped] * w[:, None]).sum(0) / w.sum()
                rows.append(torch.cat([x[s, :1], x[s, 1:][kept], fused[None]]))
            x = torch.stack(rows)
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return model.head(model.norm(x)[:, 0])


def test_prune_matches_reference() -> None:
    model, x = get_model("vit_small_test", batch_size=2, depth=3)
    graph = capture(model, x)
    out = prune_tokens(graph, PassContext(), keep=0.5, layers=[1, 2])
    assert [n.outputs[0].shape[1] for n in out.find("attentive_prune")] == [10, 6]  # 1+8+1, 1+4+1
    assert out.flops() < graph.flops()
    with torch.no_grad():
        want = _ref_evit_forward(model, x[0], {1: 8, 2: 4})
    torch.testing.assert_close(run_graph(out, list(x))[0], want, atol=1e-5, rtol=1e-5)


def test_pyramid_schedule_and_errors() -> None:
    assert prune_plan(64, 12, 0.7, None, "pyramid", None) == {3: 32, 6: 16, 9: 8}
    assert prune_plan(64, 12, 0.5, None, "evit", None) == {3: 32, 6: 16, 9: 8}
    # the registry checks Literal options, called from Python or from a pipeline string
    bad = (r"pass 'prune-tokens': option schedule='bogus' is not a valid evit\|pyramid "
           r"\(choose one of evit, pyramid\)")
    with pytest.raises(AccelValueError, match=bad):
        prune_tokens(Graph((), (), (), {}), PassContext(), schedule="bogus")  # type: ignore
    with pytest.raises(AccelValueError, match=bad):
        parse_pipeline("prune-tokens{schedule=bogus}")


def test_no_class_token_or_blocks_skips() -> None:
    model, x = get_model("vit_small_test", batch_size=1, depth=2)
    graph = capture(model, x)
    assert prune_tokens(graph, PassContext(), protect=0) is graph
    cnn, xc = get_model("resnet_small_test", batch_size=1)
    g = capture(cnn, xc)
    assert prune_tokens(g, PassContext()) is g


def test_prune_exports_to_onnx() -> None:
    import onnxruntime as ort

    from accel.backends.onnx.exporter import graph_to_onnx

    model, x = get_model("vit_small_test", batch_size=2, depth=2)
    out = prune_tokens(capture(model, x), PassContext(), keep=0.5, layers=[0, 1])
    sess = ort.InferenceSession(graph_to_onnx(out).SerializeToString())
    got = torch.from_numpy(sess.run(None, {"input0": x[0].numpy()})[0])
    torch.testing.assert_close(got, run_graph(out, list(x))[0], atol=1e-5, rtol=1e-5)
