"""A plain-PyTorch Vision Transformer (ViT / DeiT layout), with optional LayerScale,
QK-norm, distillation token and a RePaViT-style FFN whose "idle" channels skip the GELU."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from accel.errors import AccelValueError
from accel.models.common import seeded


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a VisionTransformer."""

    img_size: int = 224
    """Input height and width in pixels."""
    patch: int = 16
    """Patch side in pixels (the patch-embedding conv's kernel and stride)."""
    dim: int = 384
    """Embedding width."""
    depth: int = 12
    """Number of transformer blocks."""
    heads: int = 6
    """Attention heads per block."""
    mlp_ratio: float = 4.0
    """MLP hidden width as a multiple of `dim`."""
    num_classes: int = 1000
    """Classifier outputs."""
    in_chans: int = 3
    """Input image channels."""
    layer_scale: float | None = None
    """LayerScale gamma init value, or None for no LayerScale."""
    qk_norm: bool = False
    """Apply a LayerNorm over the head dim to queries and keys."""
    distilled: bool = False
    """Add a DeiT distillation token with its own head (outputs are averaged)."""
    ffn_idle_ratio: float = 0.0
    """Fraction of MLP hidden channels that bypass the GELU (RePaViT); 0 = normal MLP."""


class LayerScale(nn.Module):
    """Per-channel learned scale: x * gamma."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale the last dimension of x by gamma."""
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention: fused qkv Linear, optional QK-norm, SDPA, output proj."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % heads != 0:
            raise AccelValueError(
                f"ViT dim {dim} is not divisible by heads {heads}; pick heads dividing dim"
            )
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the token axis of x [B, N, C]."""
        b, n, c = x.shape
        qkv = (
            self.qkv(x)
            .reshape(b, n, 3, self.heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2; with idle_ratio > 0 the last hidden channels skip the GELU."""

    def __init__(self, dim: int, hidden: int, idle_ratio: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= idle_ratio < 1.0:
            raise AccelValueError(f"ffn_idle_ratio must be in [0, 1), got {idle_ratio}")
        self.n_active = hidden - round(hidden * idle_ratio)
        self.hidden = hidden
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to x [B, N, C]."""
        h = self.fc1(x)
        if self.n_active == self.hidden:
            return self.fc2(self.act(h))
        active, idle = h[:, :, : self.n_active], h[:, :, self.n_active :]
        return self.fc2(torch.cat([self.act(active), idle], dim=-1))


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.qk_norm)
        ls = cfg.layer_scale
        self.ls1 = LayerScale(cfg.dim, ls) if ls is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.ffn_idle_ratio)
        self.ls2 = LayerScale(cfg.dim, ls) if ls is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run one block on x [B, N, C]."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """ViT classifier: patch embedding, class (+ distillation) token, blocks, norm, head."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.img_size % cfg.patch != 0:
            raise AccelValueError(
                f"ViT img_size {cfg.img_size} is not a multiple of patch {cfg.patch}"
            )
        self.cfg = cfg
        self.img_size = cfg.img_size
        self.in_chans = cfg.in_chans
        num_patches = (cfg.img_size // cfg.patch) ** 2
        self.num_prefix_tokens = 2 if cfg.distilled else 1
        self.patch_embed = nn.Conv2d(cfg.in_chans, cfg.dim, cfg.patch, stride=cfg.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.dist_token = (
            nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.distilled else None
        )
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + self.num_prefix_tokens, cfg.dim)
        )
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        self.head_dist = nn.Linear(cfg.dim, cfg.num_classes) if cfg.distilled else None
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated-normal (std 0.02) tokens, position embedding and Linear weights."""
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images x [B, C, H, W] into logits [B, num_classes]."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        b = x.shape[0]
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(b, -1, -1))
        x = torch.cat([*prefix, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        logits = self.head(x[:, 0])
        if self.head_dist is not None:
            logits = (logits + self.head_dist(x[:, 1])) / 2
        return logits


VIT_CONFIGS: dict[str, ViTConfig] = {
    "vit_s16": ViTConfig(img_size=224, patch=16, dim=384, depth=12, heads=6),
    "vit_b16": ViTConfig(img_size=224, patch=16, dim=768, depth=12, heads=12),
    "vit_tiny_digits": ViTConfig(
        img_size=8, patch=2, dim=64, depth=4, heads=4, num_classes=10, in_chans=1
    ),
    "vit_small_test": ViTConfig(
        img_size=32, patch=8, dim=64, depth=2, heads=2, num_classes=10, layer_scale=0.5
    ),
}
"""Named ViT configurations."""


def build_vit(name: str, seed: int = 0, **overrides: object) -> VisionTransformer:
    """Build the named ViT config (fields overridable by keyword), seeded, in eval mode."""
    cfg = dataclasses.replace(VIT_CONFIGS[name], **overrides)
    with seeded(seed):
        model = VisionTransformer(cfg)
    return model.eval()
