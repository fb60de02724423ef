"""Vision Transformer for CIFAR-sized images (homework Problem 3), timm style.

x (B, C, H, W) -> PatchEmbed -> (B, N, dim) -> prepend class token -> add
positional embedding -> Transformer (pre-norm) -> LayerNorm -> head on the
class token -> logits (B, num_classes).

Two positional embeddings:
- "learned" (the starter code's): one trained vector per position, so the model only
  accepts the patch grid it was built for.
- "sincos" (the starter code's question 3b): a fixed 2-D sine-cosine code computed at
  forward time from the actual patch grid, so there is no maximum length and a
  model built for 32x32 images runs unchanged on 64x64 ones.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from attnlab.config import ConfigError
from attnlab.transformer import Transformer

Tensor = torch.Tensor


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping square patches and project each one linearly.

    A Conv2d with kernel = stride = patch size is exactly "flatten every patch,
    then nn.Linear(in_chans * patch**2, dim)", done in one kernel.
    forward(x (B, C, H, W)) -> (B, N, dim) with N = (H / patch) * (W / patch), row-major.
    """

    def __init__(self, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, dim: int = 128) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not a multiple of patch_size={patch_size}")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, dim, H/p, W/p) -> (B, N, dim)


def sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0,
              device=None, dtype=torch.float32) -> Tensor:
    """2-D sine-cosine position code (MAE / "simple ViT"), (grid_h * grid_w, dim), row-major.

    A quarter of the channels encode the row with sin, a quarter with cos, and
    likewise for the column, at geometrically spaced frequencies; any grid size works.
    """
    if dim % 4:
        raise ValueError(f"sincos positional embedding needs dim divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device, dtype=torch.float32),
                            torch.arange(grid_w, device=device, dtype=torch.float32), indexing="ij")
    omega = torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4)
    omega = 1.0 / temperature**omega  # (dim/4,)
    y = ys.flatten()[:, None] * omega[None, :]
    x = xs.flatten()[:, None] * omega[None, :]
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1).to(dtype)


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, positional embedding, Transformer, head.

    forward(x, return_attention=False) -> logits (B, num_classes), or
    (logits, maps (B, depth, heads, 1+N, 1+N)); token 0 is the class token.
    """

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 10,
        dim: int = 128,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pos_embed: str = "learned",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        self.num_classes, self.dim, self.pos_embed_type = num_classes, dim, pos_embed
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, dim))
        else:
            self.register_parameter("pos_embed", None)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = Transformer(dim, heads, depth, d_hidden=int(dim * mlp_ratio), dropout=dropout,
                                  pre_norm=True, drop_path=drop_path)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # timm's ViT init: small truncated-normal weights train far better from
        # scratch than PyTorch's default fan-in uniform for Linear layers.
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _add_pos_embed(self, x: Tensor, grid_h: int, grid_w: int) -> Tensor:
        """x (B, 1+N, dim) -> x + positional code; the class token gets no position under sincos."""
        if self.pos_embed is None:
            pos = sincos_2d(grid_h, grid_w, self.dim, device=x.device, dtype=x.dtype)
            return torch.cat([x[:, :1], x[:, 1:] + pos], dim=1)
        if x.shape[1] != self.pos_embed.shape[1]:
            pe, p = self.patch_embed, self.patch_embed.patch_size
            raise ConfigError(
                f"the images are {grid_h * p}x{grid_w * p} pixels but the model was built for "
                f"vit.model.img_size = {pe.img_size} ({pe.num_patches} learned patch positions, "
                f"{grid_h * grid_w} here): set vit.model.img_size to {grid_h * p}"
            )
        return x + self.pos_embed

    def forward_features(self, x: Tensor, return_attention: bool = False):
        """Images (B, C, H, W) -> normalised tokens (B, 1+N, dim) [, maps (B, L, H, 1+N, 1+N)]."""
        p = self.patch_embed.patch_size
        grid_h, grid_w = x.shape[-2] // p, x.shape[-1] // p
        x = self.patch_embed(x)  # (B, N, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(self._add_pos_embed(x, grid_h, grid_w))
        if return_attention:
            x, maps = self.blocks(x, return_attention=True)
            return self.norm(x), maps
        return self.norm(self.blocks(x))

    def forward_head(self, x: Tensor) -> Tensor:
        """Tokens (B, 1+N, dim) -> logits (B, num_classes) from the class token."""
        return self.head(x[:, 0])

    def forward(self, x: Tensor, return_attention: bool = False):
        if return_attention:
            feats, maps = self.forward_features(x, return_attention=True)
            return self.forward_head(feats), maps
        return self.forward_head(self.forward_features(x))


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[VisionTransformer, dict]:
    """Rebuild the model a checkpoint.pt describes; returns (model in eval mode, checkpoint dict).

    The file is loaded with weights_only (see attnlab.checkpoint): a foreign,
    truncated or GPT checkpoint raises CheckpointError, a ValueError.
    """
    from attnlab.checkpoint import load_model

    return load_model(path, "vit", VisionTransformer, map_location)
