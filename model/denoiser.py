"""The raw denoiser network F_theta of the 4D latent diffusion model (paper 3.4, eq. 9), to be wrapped
in EDMPrecond. Input: noisy latent sets of T frames, each M latents of C0 channels. Conditions: the rest
point cloud P1 and the video frame paired with each latent frame.

No timestamp enters the network (training uses a random subset of frames), so it is equivariant to
permuting frames: frames only meet in the temporal self-attention, which has no position encoding."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.attention import CrossAttentionBlock, ResidualAttention, ResidualFeedForward
from model.anchors import anchor_points
from model.embeddings import NoiseEmbedding, PointEmbedding
from model.vit import ViT


@dataclass
class DenoiserConfig:
    latent_channels: int = 32   # C0, as the VAE's
    width: int = 512
    heads: int = 8
    depth: int = 8              # L denoiser blocks
    num_freqs: int = 8
    image_size: int = 256
    image_channels: int = 3     # RGB video
    patch_size: int = 16
    video_vit_depth: int = 4
    video_object_mask: bool = True  # the video cross-attention attends only to tokens that show the object

    # What a checkpoint saved before a field existed meant by it (the model it holds was trained so).
    LEGACY = {"video_object_mask": False}

    @classmethod
    def from_saved(cls, saved: dict) -> "DenoiserConfig":
        return cls(**{**cls.LEGACY, **saved})

    @classmethod
    def tiny(cls) -> "DenoiserConfig":
        """A few-thousand-parameter configuration for tests."""
        return cls(latent_channels=8, width=32, heads=2, depth=1, num_freqs=4, image_size=32, patch_size=8,
                   video_vit_depth=1)


class DenoiserBlock(nn.Module):
    """Eq. 9: spatial self-attention, cross-attention to P1, cross-attention to the frame's video tokens,
    temporal self-attention along each latent's trajectory, feed-forward; each adaLN-modulated by the
    noise embedding."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.spatial = ResidualAttention(width, heads, cond_dim=width)
        self.geometry = ResidualAttention(width, heads, context_dim=width, cond_dim=width)
        self.video = ResidualAttention(width, heads, context_dim=width, cond_dim=width)
        self.temporal = ResidualAttention(width, heads, cond_dim=width)
        self.feed_forward = ResidualFeedForward(width, cond_dim=width)

    def forward(self, h, geometry, video, noise, frames: int, video_mask=None):
        """h, geometry (B*T, M, W); video (B*T, L, W); noise (B, W); video_mask (B*T, L) bool or None."""
        batch_frames, num_latents, width = h.shape
        batch = batch_frames // frames
        per_frame = noise.repeat_interleave(frames, dim=0)         # (B*T, W)
        h = self.spatial(h, cond=per_frame)
        h = self.geometry(h, geometry, per_frame)
        h = self.video(h, video, per_frame, key_mask=video_mask)
        # (B, T, M, W) -> (B*M, T, W): each latent index attends along its own trajectory.
        trajectories = h.view(batch, frames, num_latents, width).transpose(1, 2).reshape(-1, frames, width)
        trajectories = self.temporal(trajectories, cond=noise.repeat_interleave(num_latents, dim=0))
        h = trajectories.view(batch, num_latents, frames, width).transpose(1, 2).reshape(batch_frames, num_latents, width)
        return self.feed_forward(h, per_frame)


class Denoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.noise_embedding = NoiseEmbedding(width)
        self.point_embedding = PointEmbedding(width, cfg.num_freqs)
        # The P1 condition: 3DShape2VecSet geometry encoder (as the VAE's eq. 1), once per clip.
        self.geometry_encoder = CrossAttentionBlock(width, cfg.heads, width)
        self.video_encoder = ViT(cfg.image_channels, cfg.image_size, cfg.patch_size, width, cfg.heads,
                                 cfg.video_vit_depth)
        self.latent_in = nn.Linear(cfg.latent_channels, width)
        self.blocks = nn.ModuleList(DenoiserBlock(width, cfg.heads) for _ in range(cfg.depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, cfg.latent_channels)
        nn.init.zeros_(self.out.weight)  # F_theta = 0 at start: D = c_skip x, EDM's neutral guess
        nn.init.zeros_(self.out.bias)

    def condition(self, p1: torch.Tensor, video: torch.Tensor, anchors: torch.Tensor) -> dict:
        """The clip's condition tokens, which do not depend on the noise level: computed once per clip
        and passed as `condition=` to every sampler step instead of p1 and video. `anchors` (B, M, 3)
        are anchor_points(p1, M), the VAE's: latent i belongs to surface point anchors[:, i]."""
        batch, frames = video.shape[:2]
        num_latents = anchors.shape[1]
        anchors = self.point_embedding(anchors)                                          # (B, M, W)
        geometry = self.geometry_encoder(anchors, self.point_embedding(p1))              # (B, M, W)
        geometry = geometry.unsqueeze(1).expand(-1, frames, -1, -1).reshape(batch * frames, num_latents, -1)
        frames_flat = video.flatten(0, 1)
        return {"anchors": anchors, "geometry": geometry,
                "video": self.video_encoder(frames_flat),                                # (B*T, L, W)
                "video_mask": self.video_encoder.object_mask(frames_flat) if self.cfg.video_object_mask else None}

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, p1: torch.Tensor | None = None,
                video: torch.Tensor | None = None, condition: dict | None = None) -> torch.Tensor:
        """x (B, T, M, C0) scaled noisy latents, c_noise (B,), p1 (B, N, 3), video (B, T, 3, H, W), or
        instead of p1 and video their precomputed `condition` -> (B, T, M, C0)."""
        batch, frames, num_latents, _ = x.shape
        if condition is None:
            if video is None or p1 is None or video.shape[:2] != (batch, frames):
                raise ValueError(f"Denoiser: needs p1 and a video with one frame per latent frame of x "
                                 f"{tuple(x.shape)}, got video {None if video is None else tuple(video.shape)}")
            condition = self.condition(p1, video, anchor_points(p1, num_latents))
        noise = self.noise_embedding(c_noise)                                            # (B, W)
        h = (self.latent_in(x) + condition["anchors"].unsqueeze(1)).reshape(batch * frames, num_latents, -1)
        for block in self.blocks:
            h = block(h, condition["geometry"], condition["video"], noise, frames, condition.get("video_mask"))
        return self.out(self.out_norm(h)).reshape(batch, frames, num_latents, -1)
