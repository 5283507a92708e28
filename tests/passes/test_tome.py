"""Token merging pass: graph shape, r=0 exactness, numerics vs a plain-torch ToMe reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import accel
from accel.errors import AccelValueError
from accel.frontend import capture
from accel.models import get_model
from accel.passes.registry import PassContext
from accel.passes.tome import tome
from accel.report import PassRecord
from accel.testing import run_graph


def _ref_merge(x: torch.Tensor, metric: torch.Tensor, size: torch.Tensor, r: int):
    """Per-sample ToMe with python loops: class token protected, A=even, B=odd patches;
    metric [B, N, D] is what similarity is measured on."""
    outs, sizes = [], []
    for b in range(x.shape[0]):
        patches, s = x[b, 1:], size[b, 1:]
        m = F.normalize(metric[b, 1:], dim=-1)
        a_ids, b_ids = list(range(0, len(m), 2)), list(range(1, len(m), 2))
        best = [max(b_ids, key=lambda j, i=i: float(m[i] @ m[j])) for i in a_ids]
        score = [float(m[i] @ m[j]) for i, j in zip(a_ids, best)]
        merged = sorted(range(len(a_ids)), key=lambda t: -score[t])[:r]
        acc = {j: (patches[j] * s[j], s[j].clone()) for j in b_ids}
        for t in merged:
            i, j = a_ids[t], best[t]
            acc[j] = (acc[j][0] + patches[i] * s[i], acc[j][1] + s[i])
        kept = [a_ids[t] for t in range(len(a_ids)) if t not in merged]
        rows = [x[b, 0]] + [patches[i] for i in kept] + [acc[j][0] / acc[j][1] for j in b_ids]
        szs = [size[b, 0]] + [s[i] for i in kept] + [acc[j][1] for j in b_ids]
        outs.append(torch.stack(rows))
        sizes.append(torch.stack(szs))
    return torch.stack(outs), torch.stack(sizes)


def _ref_tome_forward(model, img: torch.Tensor, r: int,  # noqa: ANN001
                      metric: str = "keys") -> torch.Tensor:
    """Built-in ViT forward with ToMe (proportional attention) written out in plain torch."""
    x = model.patch_embed(img).flatten(2).transpose(1, 2)
    x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], 1) + model.pos_embed
    size = torch.ones_like(x[..., :1])
    for blk in model.blocks:
        att = blk.attn
        b, n, c = x.shape
        qkv = att.qkv(blk.norm1(x)).reshape(b, n, 3, att.heads, att.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = size.log().reshape(b, 1, 1, n)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + blk.ls1(att.proj(o.transpose(1, 2).reshape(b, n, c)))
        x, size = _ref_merge(x, k.mean(1) if metric == "keys" else x, size, r)
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return model.head(model.norm(x)[:, 0])


def test_tome_matches_reference_and_reduces_flops() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    out = tome(graph, PassContext(), r=3)
    assert len(out.find("bipartite_merge")) == 2
    assert out.flops() < graph.flops()
    got = run_graph(out, list(x))[0]
    with torch.no_grad():
        want = _ref_tome_forward(model, x[0], r=3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_token_metric_matches_reference() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    ctx = PassContext(record=PassRecord("tome"))
    out = tome(graph, ctx, r=3, metric="tokens")
    merges = out.find("bipartite_merge")
    assert len(merges) == 2
    assert not out.find("mean")  # no key-averaging metric: it matches on the tokens
    assert all(n.inputs[1] is n.inputs[0] for n in merges)
    assert any("metric tokens" in note for note in ctx.record.notes)
    got = run_graph(out, list(x))[0]
    with torch.no_grad():
        want = _ref_tome_forward(model, x[0], r=3, metric="tokens")
        keys_metric = _ref_tome_forward(model, x[0], r=3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, keys_metric, atol=1e-5)  # the option changes the matching


def test_compile_reports_accuracy_cost() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    calib = [(torch.randn(2, 3, 32, 32),) for _ in range(3)]
    compiled = accel.compile(model, x, pipeline="default,tome{r=4}", calibration=calib)
    acc = compiled.report.accuracy
    assert 0.5 < acc["cosine"] < 1.0 and acc["max_abs_diff"] > 0
    with torch.no_grad():  # the agreement the report claims, recomputed from eager and compiled
        same = [(model(x).argmax(-1) == compiled(x).argmax(-1)).float() for (x,) in calib]
    assert acc["argmax_agreement"] == pytest.approx(torch.cat(same).mean().item())
    assert "argmax_agreement" in str(compiled.report)
    record = next(p for p in compiled.report.passes if p.name == "tome")
    assert record.flops_after < record.flops_before


def test_unknown_metric_is_rejected() -> None:
    model, x = get_model("vit_small_test", batch_size=1)
    with pytest.raises(AccelValueError, match=r"pass 'tome': option metric='values' is not a "
                                              r"valid keys\|tokens \(choose one of keys, tokens\)"):
        tome(capture(model, x), PassContext(), r=2, metric="values")


def test_r0_is_unchanged_and_exact() -> None:
    model, x = get_model("vit_small_test", batch_size=2)
    graph = capture(model, x)
    ctx = PassContext()
    assert tome(graph, ctx, r=0) is graph
    with torch.no_grad():
        assert torch.equal(run_graph(graph, list(x))[0], model(*x))


def test_r_too_large_is_clamped() -> None:
    model, x = get_model("vit_small_test", batch_size=1)
    graph = capture(model, x)
    ctx = PassContext()
    out = tome(graph, ctx, r=100)
    merges = out.find("bipartite_merge")
    assert [n.attrs["r"] for n in merges] == [8, 4]  # 16 patches -> 8 -> 4 left
    assert run_graph(out, list(x))[0].shape == (1, 10)


def test_graph_without_blocks_is_skipped() -> None:
    model, x = get_model("resnet_small_test", batch_size=1)
    graph = capture(model, x)
    assert tome(graph, PassContext(), r=4) is graph


def test_tome_exports_to_onnx_and_runs_any_batch() -> None:
    import onnxruntime as ort

    from accel.backends.onnx.exporter import graph_to_onnx

    model, x = get_model("vit_small_test", batch_size=2)
    merged = tome(capture(model, x, dynamic_shapes="auto"), PassContext(), r=3)
    assert str(merged.inputs[0].type) == "f32[batch,3,32,32]"  # tokens stay static
    proto = graph_to_onnx(merged)
    ops = {n.op_type for n in proto.graph.node}
    assert {"TopK", "GatherElements", "MatMul"} <= ops and "ScatterElements" not in ops
    sess = ort.InferenceSession(proto.SerializeToString())
    for batch in (2, 3):  # the exported batch and another one
        xi = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        want = run_graph(tome(capture(model, (xi,)), PassContext(), r=3), [xi])[0]
        got = torch.from_numpy(sess.run(None, {"input0": xi.numpy()})[0])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_compiled_tome_other_batch_size() -> None:
    import accel

    model, x = get_model("vit_small_test", batch_size=2)
    compiled = accel.compile(model, x, pipeline="tome{r=3}", target="reference")
    assert compiled.graph.find("bipartite_merge")
    x3 = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    want = run_graph(tome(capture(model, (x3,)), PassContext(), r=3), [x3])[0]
    torch.testing.assert_close(compiled(x3), want, atol=1e-5, rtol=1e-5)


def test_tome_on_hf_deit_keeps_prefix_tokens() -> None:
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    cfg = DeiTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, num_labels=3)
    model = DeiTForImageClassificationWithTeacher(cfg).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    graph = capture(model, (x,))
    out = tome(graph, PassContext(), r=2)
    merges = out.find("bipartite_merge")
    assert [n.attrs["protected"] for n in merges] == [2, 2]
    assert merges[-1].outputs[0].shape[1] == 18 - 4
    got = run_graph(out, [x])[0]
    with torch.no_grad():
        want = model(x).logits
    assert got.shape == want.shape
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.9
