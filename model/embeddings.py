"""Inputs to token space: Fourier features of points and the EDM noise level."""
from __future__ import annotations

import math

import torch
from torch import nn


class PointEmbedding(nn.Module):
    """3DShape2VecSet point embedding: [x, sin(2^k pi x), cos(2^k pi x) for k < num_freqs] per
    coordinate, then a Linear to `dim`. (B, P, 3) -> (B, P, dim)."""

    def __init__(self, dim: int, num_freqs: int = 8):
        super().__init__()
        self.register_buffer("frequencies", (2.0 ** torch.arange(num_freqs)) * math.pi, persistent=False)
        self.proj = nn.Linear(3 + 6 * num_freqs, dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        # Features in float32 even under autocast: sin(2^7 pi x) needs the mantissa.
        angles = (points.float().unsqueeze(-1) * self.frequencies).flatten(-2)  # (B, P, 3 * num_freqs)
        return self.proj(torch.cat([points.float(), angles.sin(), angles.cos()], dim=-1))


class NoiseEmbedding(nn.Module):
    """EDM noise conditioning: c_noise (B,) -> sinusoidal features (EDM's PositionalEmbedding,
    max_positions=10000, endpoint=True) -> Linear, SiLU, Linear -> (B, dim)."""

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        if dim % 2:
            raise ValueError(f"NoiseEmbedding: dim={dim} must be even (half cos, half sin)")
        half = dim // 2
        self.register_buffer("frequencies", (1 / max_positions) ** (torch.arange(half) / max(half - 1, 1)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = c_noise.float().reshape(-1, 1) * self.frequencies
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))
