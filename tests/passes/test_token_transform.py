"""Token Transforming pass: graph shape, identity and ToMe special cases, numerics vs a
plain-torch reference of the method, ONNX export, the Triton token kind, bad options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import accel
from accel.errors import AccelValueError
from accel.frontend import capture
from accel.ir.ops import tokens
from accel.models import get_model
from accel.passes.pipeline import parse_pipeline
from accel.passes.registry import PassContext
from accel.passes.token_transform import token_transform
from accel.passes.tome import tome
from accel.report import PassRecord
from accel.testing import run_graph


def _ref_transform(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor,
                   cls_attn: torch.Tensor | None, r: int, select: str, k: int, tau: float,
                   p: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Token Transforming per sample with python loops: choose the targets, build the dense
    token matrix W [N', N] row by row, return W (x s) / (W s) and W s."""
    outs, sizes = [], []
    for b in range(x.shape[0]):
        n = x.shape[1]
        m = F.normalize(metric[b], dim=-1)
        rest = list(range(p, n))
        if select == "bipartite":
            a_ids, b_ids = rest[0::2], rest[1::2]
            best = {i: max(float(m[i] @ m[j]) for j in b_ids) for i in a_ids}
            sources = sorted(a_ids, key=lambda i: -best[i])[:r]
            targets = [i for i in a_ids if i not in sources] + b_ids
            candidates = b_ids
        else:
            by_attn = sorted(rest, key=lambda i: -float(cls_attn[b, i]))
            targets, sources = sorted(by_attn[:len(rest) - r]), by_attn[len(rest) - r:]
            candidates = targets
        rows = list(range(p)) + targets
        w = torch.zeros(len(rows), n)
        for row, t in enumerate(rows):
            w[row, t] = 1.0
        for j in sources:
            sims = sorted(((float(m[j] @ m[t]), t) for t in candidates), reverse=True)[:k]
            weights = torch.tensor([s for s, _ in sims]).div(tau).softmax(0)
            for wt, (_, t) in zip(weights, sims, strict=True):
                w[rows.index(t), j] = wt
        s = size[b]
        outs.append((w @ (x[b] * s)) / (w @ s))
        sizes.append(w @ s)
    return torch.stack(outs), torch.stack(sizes)


def _ref_forward(model, img: torch.Tensor, r: int, select: str = "attention", k: int = 4,  # noqa: ANN001
                 tau: float = 0.1, metric: str = "keys") -> torch.Tensor:
    """Built-in ViT forward with Token Transforming (proportional attention) in plain torch."""
    x = model.patch_embed(img).flatten(2).transpose(1, 2)
    x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], 1) + model.pos_embed
    size = torch.ones_like(x[..., :1])
    for blk in model.blocks:
        att = blk.attn
        b, n, c = x.shape
        qkv = att.qkv(blk.norm1(x)).reshape(b, n, 3, att.heads, att.head_dim).permute(2, 0, 3, 1, 4)
        q, k_, v = qkv.unbind(0)
        bias = size.log().reshape(b, 1, 1, n)
        o = F.scaled_dot_product_attention(q, k_, v, attn_mask=bias)
        x = x + blk.ls1(att.proj(o.transpose(1, 2).reshape(b, n, c)))
        logits = (q[:, :, :1] @ k_.transpose(-1, -2)) * att.head_dim ** -0.5 + bias
        cls_attn = logits.softmax(-1).mean((1, 2))  # [B, N]
        x, size = _ref_transform(x, k_.mean(1) if metric == "keys" else x, size, cls_attn, r,
                                 select, k, tau)
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return model.head(model.norm(x)[:, 0])


@pytest.mark.parametrize("kw", [{}, {"select": "bipartite", "k": 3, "tau": 0.5},
                                {"k": 8, "tau": 1.0, "metric": "tokens"}])
def test_matches_reference_and_reduces_flops(kw: dict) -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    ctx = PassContext(record=PassRecord("token-transform"))
    out = token_transform(graph, ctx, r=3, **kw)
    nodes = out.find("token_transform")
    assert [n.outputs[0].shape[1] for n in nodes] == [14, 11]  # 17 -> 14 -> 11 tokens
    assert all(n.attrs["protected"] == 1 for n in nodes)
    # class-token attention (a softmax row per block) only where it chooses the targets
    assert bool(out.find("softmax")) == (kw.get("select", "attention") == "attention")
    assert out.flops() < graph.flops()
    assert any("r per block [3, 3]" in note for note in ctx.record.notes)
    got = run_graph(out, list(x))[0]
    with torch.no_grad():
        want = _ref_forward(model, x[0], r=3, **kw)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_op_is_its_token_matrix() -> None:
    """The op's structured computation equals W (x s) / (W s) with the dense matrix, sizes
    are conserved, and each source's column sums to 1."""
    x, metric = torch.randn(2, 13, 8), torch.randn(2, 13, 5)
    imp, size = torch.rand(2, 13), torch.randint(1, 4, (2, 13, 1)).float()
    for select in ("attention", "bipartite"):
        kw = {"keep": 7, "protected": 1, "select": select, "k": 3, "tau": 0.2}
        w = tokens.transform_matrix(metric, imp, **kw)
        got_x, got_s = tokens.token_transform(x, metric, size, imp, **kw)
        torch.testing.assert_close(got_x, (w @ (x * size)) / (w @ size))
        torch.testing.assert_close(got_s, w @ size)
        torch.testing.assert_close(w.sum(1), torch.ones(2, 13))  # every token's mass kept
        want_x, want_s = _ref_transform(x, metric, size, imp, 5, select, 3, 0.2)
        torch.testing.assert_close(got_x, want_x)
        torch.testing.assert_close(got_s, want_s)


def test_bipartite_with_one_target_is_tome() -> None:
    """k=1 makes W one-hot: select=bipartite is ToMe's bipartite merge exactly."""
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    a = run_graph(token_transform(graph, PassContext(), r=3, select="bipartite", k=1), list(x))
    b = run_graph(tome(graph, PassContext(), r=3), list(x))
    assert torch.equal(a[0], b[0])
    x_, m = torch.randn(2, 11, 8), torch.randn(2, 11, 4)
    s = torch.randint(1, 4, (2, 11, 1)).float()
    for got, want in zip(tokens.token_transform(x_, m, s, keep=6, select="bipartite", k=1),
                         tokens.bipartite_merge(x_, m, s, r=4), strict=True):
        torch.testing.assert_close(got, want)


def test_r0_is_unchanged_and_keep_all_is_identity() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    assert token_transform(graph, PassContext(), r=0) is graph
    with torch.no_grad():
        assert torch.equal(run_graph(graph, list(x))[0], model(*x))
    x_, m, imp = torch.randn(2, 9, 8), torch.randn(2, 9, 4), torch.rand(2, 9)
    got_x, got_s = tokens.token_transform(x_, m, None, imp, keep=8)  # no sources: W = I
    assert torch.equal(got_x, x_) and torch.equal(got_s, torch.ones(2, 9, 1))


def test_r_too_large_is_clamped() -> None:
    model, x = get_model("vit_small_test", batch_size=1)
    graph = capture(model, x)
    ctx = PassContext(record=PassRecord("token-transform"))
    out = token_transform(graph, ctx, r=100)
    assert [n.attrs["keep"] for n in out.find("token_transform")] == [1]  # 16 patches -> 1
    notes = ctx.record.notes
    assert any("block 0: r=100 clamped to 15" in n for n in notes)
    assert any("block 1: r=100 clamped to 0" in n for n in notes)
    out = token_transform(graph, PassContext(), r=100, select="bipartite")
    assert [n.attrs["keep"] for n in out.find("token_transform")] == [8, 4]  # as tome
    assert run_graph(out, list(x))[0].shape == (1, 10)


def test_graph_without_blocks_or_class_token_is_skipped() -> None:
    model, x = get_model("resnet_small_test", batch_size=1)
    graph = capture(model, x)
    assert token_transform(graph, PassContext(), r=4) is graph
    vit, xv = get_model("vit_small_test", batch_size=1)
    g = capture(vit, xv)
    ctx = PassContext(record=PassRecord("token-transform"))
    assert token_transform(g, ctx, r=2, protect=0) is g  # attention targets need a class token
    assert token_transform(g, PassContext(), r=2, protect=0, select="bipartite") is not g


@pytest.mark.parametrize("text,match", [
    ("token-transform{select=random}", r"option select='random' is not a valid "
                                       r"attention\|bipartite"),
    ("token-transform{metric=values}", r"option metric='values' is not a valid keys\|tokens"),
    ("token-transform{k=0}", r"pass token-transform: k=0 must be >= 1"),
    ("token-transform{tau=0}", r"pass token-transform: tau=0.0 must be > 0"),
    ("token-transform{schedule=list,rs=[1]}", r"pass token-transform: schedule=list needs rs"),
])
def test_bad_options_name_the_pass(text: str, match: str) -> None:
    model, x = get_model("vit_small_test", batch_size=1)
    with pytest.raises(AccelValueError, match=match):
        accel.compile(model, x, pipeline=text, target="reference")


def test_pipeline_string_round_trips() -> None:
    (step,) = parse_pipeline("token-transform{r=8,schedule=decreasing,select=bipartite,k=2,"
                             "tau=0.05,metric=tokens,prop_attn=false}")
    assert step.options == {"r": 8, "schedule": "decreasing", "select": "bipartite", "k": 2,
                            "tau": 0.05, "metric": "tokens", "prop_attn": False}


@pytest.mark.parametrize("kw", [{}, {"select": "bipartite", "k": 2, "metric": "tokens"}])
def test_exports_to_onnx_and_runs_any_batch(kw: dict) -> None:
    import onnxruntime as ort

    from accel.backends.onnx.exporter import graph_to_onnx

    model, x = get_model("vit_small_test", batch_size=2)
    out = token_transform(capture(model, x, dynamic_shapes="auto"), PassContext(), r=3, **kw)
    assert str(out.inputs[0].type) == "f32[batch,3,32,32]"  # tokens stay static
    proto = graph_to_onnx(out)
    ops = {n.op_type for n in proto.graph.node}
    assert {"TopK", "Softmax", "GatherElements", "MatMul", "Equal"} <= ops
    sess = ort.InferenceSession(proto.SerializeToString())
    for batch in (2, 3):
        xi = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        want = run_graph(token_transform(capture(model, (xi,)), PassContext(), r=3, **kw),
                         [xi])[0]
        got = torch.from_numpy(sess.run(None, {"input0": xi.numpy()})[0])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cpu_target_agrees_with_reference() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    pipeline = "default,token-transform{r=3}"
    cpu = accel.compile(model, x, pipeline=pipeline, target="cpu")
    ref = accel.compile(model, x, pipeline=pipeline, target="reference")
    with torch.no_grad():
        torch.testing.assert_close(cpu(*x), ref(*x), atol=1e-5, rtol=1e-5)
    record = next(p for p in ref.report.passes if p.name == "token-transform")
    assert record.flops_after < record.flops_before


def test_hf_deit_keeps_both_prefix_tokens() -> None:
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    cfg = DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, num_labels=3)
    model = DeiTForImageClassificationWithTeacher(cfg).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    graph = capture(model, (x,))
    out = token_transform(graph, PassContext(), r=4)
    nodes = out.find("token_transform")
    assert [n.attrs["protected"] for n in nodes] == [2, 2]
    assert nodes[-1].outputs[0].shape[1] == 18 - 8
    got = run_graph(out, [x])[0]
    with torch.no_grad():
        want = model(x).logits
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.9


def test_hf_vit_exports_and_matches() -> None:
    import onnxruntime as ort
    from transformers import ViTConfig, ViTForImageClassification

    from accel.backends.onnx.exporter import graph_to_onnx

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=64, num_labels=3)
    model = ViTForImageClassification(cfg).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = token_transform(capture(model, (x,)), PassContext(), r=4, k=2)
    assert len(out.find("token_transform")) == 2
    want = run_graph(out, [x])[0]
    sess = ort.InferenceSession(graph_to_onnx(out).SerializeToString())
    name = sess.get_inputs()[0].name
    torch.testing.assert_close(torch.from_numpy(sess.run(None, {name: x.numpy()})[0]), want,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kw,match", [
    ({"keep": 2, "select": "bipartite"}, r"token_transform: keep=2 must be in \[5, 10\] for "
                                         r"select='bipartite'"),
    ({"keep": 0}, r"token_transform: keep=0 must be in \[1, 10\]"),
    ({"keep": 4, "select": "nearest"}, r"token_transform: select='nearest' must be one of"),
    ({"keep": 4, "k": 0}, r"token_transform: k=0 must be >= 1"),
])
def test_op_rejects_bad_attributes(kw: dict, match: str) -> None:
    x = torch.randn(1, 11, 8)
    with pytest.raises(AccelValueError, match=match):
        tokens.token_transform(x, x, None, torch.rand(1, 11), **kw)


def test_attention_select_needs_importance() -> None:
    x = torch.randn(1, 11, 8)
    with pytest.raises(AccelValueError, match="needs the importance input"):
        tokens.token_transform(x, x, keep=4)
