"""A plain-PyTorch BERT-style encoder (post-norm), with attention written out explicitly
as matmul -> scale -> add mask -> softmax -> matmul so that a pass can recognise it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from accel.errors import AccelValueError
from accel.models.common import seeded


@dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of a BertEncoder."""

    vocab_size: int = 30522
    """Word-piece vocabulary size."""
    hidden: int = 768
    """Hidden width."""
    layers: int = 12
    """Number of encoder layers."""
    heads: int = 12
    """Attention heads per layer."""
    intermediate: int = 3072
    """MLP hidden width."""
    max_positions: int = 512
    """Largest supported sequence length (position-embedding rows)."""
    type_vocab_size: int = 2
    """Token-type (segment) vocabulary size."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon."""
    add_pooler: bool = False
    """Also return the pooled output tanh(dense(h[:, 0]))."""


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.register_buffer(
            "position_ids", torch.arange(cfg.max_positions)[None], persistent=False
        )

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        """Embed input_ids [B, S] into [B, S, H]."""
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x)


class BertSelfAttention(nn.Module):
    """Multi-head attention with separate q, k, v projections and an explicit softmax."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        if cfg.hidden % cfg.heads != 0:
            raise AccelValueError(
                f"BERT hidden {cfg.hidden} is not divisible by heads {cfg.heads}"
            )
        self.heads = cfg.heads
        self.head_dim = cfg.hidden // cfg.heads
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Reshape [B, S, H] to [B, heads, S, head_dim]."""
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """Attend over x [B, S, H] with additive_mask [B, 1, 1, S] (0 or very negative)."""
        q = self._split_heads(self.query(x))
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / math.sqrt(self.head_dim)
        scores = scores + additive_mask
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(probs, v)
        b, _, s, _ = context.shape
        return context.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)


class BertLayer(nn.Module):
    """Post-norm encoder layer: LN(x + dense(attn(x))), then LN(h + out(gelu(inter(h))))."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertSelfAttention(cfg)
        self.attention_output = nn.Linear(cfg.hidden, cfg.hidden)
        self.attention_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.intermediate = nn.Linear(cfg.hidden, cfg.intermediate)
        self.act = nn.GELU()
        self.output = nn.Linear(cfg.intermediate, cfg.hidden)
        self.output_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """Run one layer on x [B, S, H]."""
        h = self.attention_norm(
            x + self.attention_output(self.attention(x, additive_mask))
        )
        return self.output_norm(h + self.output(self.act(self.intermediate(h))))


class BertEncoder(nn.Module):
    """BERT encoder returning the last hidden state (and the pooled output if configured)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.layers = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.layers))
        self.pooler = nn.Linear(cfg.hidden, cfg.hidden) if cfg.add_pooler else None
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0, 0.02) Linear and Embedding weights, zero biases (as in BERT)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode input_ids [B, S] with a 0/1 attention_mask [B, S] into [B, S, H]."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        keep = attention_mask[:, None, None, :].to(x.dtype)
        additive_mask = (1.0 - keep) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, additive_mask)
        if self.pooler is None:
            return x
        return x, torch.tanh(self.pooler(x[:, 0]))


BERT_CONFIGS: dict[str, BertConfig] = {
    "bert_base": BertConfig(),
    "bert_small_test": BertConfig(
        vocab_size=1000,
        hidden=64,
        layers=2,
        heads=2,
        intermediate=256,
        max_positions=64,
    ),
}
"""Named BERT configurations."""

BERT_SEQ_LENS: dict[str, int] = {"bert_base": 128, "bert_small_test": 16}
"""Default example-input sequence length per named config."""


def build_bert(name: str, seed: int = 0, **overrides: object) -> BertEncoder:
    """Build the named BERT config (fields overridable by keyword), seeded, in eval mode."""
    cfg = dataclasses.replace(BERT_CONFIGS[name], **overrides)
    with seeded(seed):
        model = BertEncoder(cfg)
    return model.eval()


def make_bert_inputs(
    model: BertEncoder, batch_size: int, seed: int = 0, seq_len: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (input_ids, attention_mask), int64 [B, S]; row 1 ends in padding when B > 1."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(
        1, model.cfg.vocab_size, (batch_size, seq_len), generator=gen
    )
    attention_mask = torch.ones(batch_size, seq_len, dtype=torch.int64)
    if batch_size > 1:
        n_pad = max(1, seq_len // 4)
        attention_mask[1, seq_len - n_pad :] = 0
        input_ids[1, seq_len - n_pad :] = 0  # [PAD]
    return input_ids, attention_mask
