"""remove-padding: token-wise ops of masked text encoders run on the real tokens only.

Before/after graph structure, numerics against eager at real-token positions on Hugging Face
BERT, RoBERTa and DistilBERT (reference and cpu targets, dynamic batch and sequence), ONNX
export with a dynamic token axis, and the graphs the pass must leave alone (no mask, causal
masks, 3-D masks, padded positions mixed by a later op)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

import accel
from accel.frontend import capture
from accel.ir.interpreter import interpret
from accel.passes.pipeline import parse_pipeline, run_pipeline
from accel.passes.registry import PassContext

transformers = pytest.importorskip("transformers")

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 128, "vocab_size": 100}


def bert(**kw: object) -> torch.nn.Module:
    cfg = transformers.BertConfig(**SMALL, max_position_embeddings=64, **kw)
    return transformers.BertModel(cfg).eval()


def roberta() -> torch.nn.Module:
    cfg = transformers.RobertaConfig(**SMALL, max_position_embeddings=80, pad_token_id=1)
    return transformers.RobertaModel(cfg).eval()


def distilbert() -> torch.nn.Module:
    cfg = transformers.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128,
                                        vocab_size=100, max_position_embeddings=64)
    return transformers.DistilBertModel(cfg).eval()


def right_padded(lengths: list[int], seq: int) -> torch.Tensor:
    return (torch.arange(seq)[None] < torch.tensor(lengths)[:, None]).long()


def batch(lengths: list[int], seq: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(len(lengths) * 100 + seq)
    return torch.randint(2, 100, (len(lengths), seq), generator=g), right_padded(lengths, seq)


def run(pipeline: str, model: torch.nn.Module, example: tuple) -> object:
    graph = capture(model, example)
    return run_pipeline(graph, parse_pipeline(pipeline),
                        PassContext(example_inputs=example, debug=True))


def notes(compiled: accel.CompiledModel, name: str = "remove-padding") -> str:
    return " ".join(" ".join(r.notes) for r in compiled.report.passes if r.name == name)


def test_graph_before_after() -> None:
    example = batch([16, 10, 3])
    before = run("default", bert(), example)[0]
    after = run("default,remove-padding", bert(), example)[0]
    assert "token_offsets" not in before.op_counts()
    counts = after.op_counts()
    assert counts["token_offsets"] == 1
    assert counts["pack_tokens"] >= 2 and counts["unpack_tokens"] >= 2
    linears = after.find("linear")
    packed = [n for n in linears if str(n.inputs[0].shape[0]) == "tokens"]
    assert len(packed) == len(linears) - 1  # every encoder linear; the pooler reads [B, C]
    assert after.symbols["tokens"].hint == 29  # the example's real tokens
    assert after.count_sources() == {"tokens": 1}
    assert after.flops() < before.flops()


@pytest.mark.parametrize("make", [bert, roberta, distilbert])
@pytest.mark.parametrize("target", ["reference", "cpu"])
def test_matches_eager_at_real_tokens(make: object, target: str) -> None:
    torch.manual_seed(0)
    model = make()  # type: ignore[operator]
    ids, mask = batch([16, 10, 3, 1])
    c = accel.compile(model, (ids, mask), pipeline="default,remove-padding", target=target)
    assert "run on the real tokens only" in notes(c)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask)[0]
    out = c(ids, mask)[0]
    real = mask.bool()
    torch.testing.assert_close(out[real], ref[real], atol=2e-5, rtol=1e-4)
    assert not out[~real].any(), "padded positions are zeros"


def test_pooler_and_dynamic_shapes() -> None:
    torch.manual_seed(0)
    model = bert()
    ids, mask = batch([16, 9, 4])
    b, s = Dim("batch", min=2, max=16), Dim("seq", min=2, max=64)
    dyn = ({0: b, 1: s}, {0: b, 1: s})
    c = accel.compile(model, (ids, mask), pipeline="default,remove-padding", target="cpu",
                      dynamic_shapes=dyn)
    for lengths, seq in (([8, 2], 8), ([33, 1, 20, 7, 33], 33), ([5, 5, 5], 5)):
        ids, mask = batch(lengths, seq)
        with torch.no_grad():
            ref = model(ids, attention_mask=mask)
        out = c(ids, mask)
        real = mask.bool()
        torch.testing.assert_close(out[0][real], ref[0][real], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out[1], ref[1], atol=2e-5, rtol=1e-4)  # right padding
    assert c.report.recompilations == 0


def test_onnx_export_has_a_dynamic_token_axis(tmp_path: object) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = bert()
    ids, mask = batch([16, 10, 3])
    b, s = Dim("batch", min=2, max=16), Dim("seq", min=2, max=64)
    path = accel.export_onnx(model, (ids, mask), tmp_path / "bert.onnx",  # type: ignore[operator]
                             pipeline="default,remove-padding",
                             dynamic_shapes=({0: b, 1: s}, {0: b, 1: s}))
    import onnx

    proto = onnx.load(str(path))
    assert {"NonZero", "Gather", "ScatterND"} <= {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    for lengths, seq in (([12, 3], 12), ([20, 20, 1, 9], 20)):
        ids, mask = batch(lengths, seq)
        with torch.no_grad():
            ref = model(ids, attention_mask=mask)[0].numpy()
        got = sess.run(None, dict(zip(names, (ids.numpy(), mask.numpy()), strict=True)))[0]
        real = mask.bool().numpy()
        np.testing.assert_allclose(got[real], ref[real], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("lengths", [[16, 0, 5], [7], [16, 16, 16]],
                         ids=["all-padding-row", "batch-of-one", "no-padding"])
def test_edge_masks(lengths: list[int]) -> None:
    torch.manual_seed(0)
    model = bert()
    ids, mask = batch(lengths)
    graph = run("default,remove-padding", model, (ids, mask))[0]
    assert "token_offsets" in graph.op_counts()
    with torch.no_grad():
        ref = model(ids, attention_mask=mask)[0]
    out = interpret(graph, (ids, mask))[0]
    real = mask.bool()
    torch.testing.assert_close(out[real], ref[real], atol=2e-5, rtol=1e-4)
    assert not out[~real].any()


def test_all_padding_batch_runs() -> None:
    model = bert()
    ids, mask = batch([16, 10])
    c = accel.compile(model, (ids, mask), pipeline="default,remove-padding", target="reference")
    out = c(ids, torch.zeros_like(mask))[0]
    assert out.shape == (2, 16, 64) and not out.any()


class KwargsModel(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, *names: str) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> object:
        return self.model(**dict(zip(self.names, tensors, strict=True)))[0]


class NoMask(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bert = bert()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.bert(ids)[0]


class Mask3d(torch.nn.Module):
    """A one-layer encoder whose attention takes a [B, S, S] mask input."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(100, 32)
        self.qkv = torch.nn.Linear(32, 96)
        self.out = torch.nn.Linear(32, 32)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        q, k, v = (t.reshape(*t.shape[:2], 4, 8).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                             attn_mask=mask[:, None].bool())
        return self.out(a.transpose(1, 2).reshape(x.shape)) + x


class UnmaskedMean(torch.nn.Module):
    """Averages every position, padding included: padded values reach a real output."""

    def __init__(self) -> None:
        super().__init__()
        self.bert = bert()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.bert(ids, attention_mask=mask)[0].mean(dim=1)


def _gpt2() -> torch.nn.Module:
    cfg = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    return KwargsModel(transformers.GPT2Model(cfg).eval(), "input_ids", "attention_mask")


@pytest.mark.parametrize("case", ["no-mask", "causal", "3d-mask", "unmasked-mean"])
def test_left_unchanged_with_a_note(case: str) -> None:
    ids, mask = batch([16, 10])
    if case == "no-mask":
        model, example, why = NoMask(), (ids,), "no padding-mask input"
    elif case == "causal":
        model, example, why = _gpt2(), (ids, mask), "not a key-padding mask"
    elif case == "3d-mask":
        mask3 = mask[:, None, :] * mask[:, :, None]  # [B, S, S]
        model, example, why = Mask3d(), (ids, mask3), "not a [batch, seq] padding mask"
    else:
        model, example, why = UnmaskedMean(), (ids, mask), "may mix padded positions"
    model.eval()
    c = accel.compile(model, example, pipeline="default,remove-padding", target="reference")
    record = next(r for r in c.report.passes if r.name == "remove-padding")
    assert not record.changed
    assert why in notes(c), notes(c)
    with torch.no_grad():
        torch.testing.assert_close(c(*example), model(*example))
