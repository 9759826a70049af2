"""Vision transformer image encoder shared by the VAE (multi-view, Pluecker channels) and the
denoiser (video frames): Conv2d patchify, learned 2D position embedding, self-attention blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import SelfAttentionBlock


class ViT(nn.Module):
    """(B, in_channels, H, W) -> (B, (H/p) * (W/p), dim) tokens in row-major patch order."""

    def __init__(self, in_channels: int, image_size: int, patch_size: int, dim: int, heads: int, depth: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"ViT: image_size={image_size} is not a multiple of patch_size={patch_size}")
        self.in_channels, self.image_size = in_channels, image_size
        self.grid = image_size // patch_size
        self.patchify = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.randn(1, self.grid * self.grid, dim) * 0.02)
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def object_mask(self, images: torch.Tensor, cells: int | None = None) -> torch.Tensor:
        """(B, cells^2) bool over a cells x cells grid of the images (the patch grid by default), in
        row-major order: True where a cell's pixels hold anything but the white background that views
        and video frames are matted on (+1 in every RGB channel, the first three). Images that show
        nothing keep every cell, so attention always has keys."""
        ink = (images[:, :3] < 0.98).any(dim=1).float()                           # (B, H, W)
        mask = (F.adaptive_max_pool2d(ink, cells or self.grid) > 0).flatten(1)
        return mask | ~mask.any(dim=1, keepdim=True)

    def forward(self, images: torch.Tensor, token_offset: torch.Tensor | None = None) -> torch.Tensor:
        """`token_offset` (B, 1, dim), if given, is added to every token before the blocks (the VAE's
        per-view embedding)."""
        if images.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(f"ViT expects images (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}: resize or rebuild the model with that image_size")
        tokens = self.patchify(images).flatten(2).transpose(1, 2) + self.position
        if token_offset is not None:
            tokens = tokens + token_offset
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
