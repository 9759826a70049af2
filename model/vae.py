"""Transformer VAE of the motion between frame 1 and frame t (paper 3.3, eq. 1-6), after
3DShape2VecSet: a latent set of M tokens, one per anchor point of P1 (model/anchors.py), encodes P1's
geometry and, from the multi-view images of frame t, where each part of P1 moved; the decoder answers,
for any query point of frame 1, where that point is at frame t. Its loss (eq. 5, 7) is the training
objective's (train/objectives.py), as EDM's loss is the diffusion model's.

Where the paper's text is open or we depart from it:
- The views are fused (attention across the tokens of all views) before the pixel shuffle, not after:
  4x fewer tokens in that attention, the same tokens out.
- The decoder predicts a displacement of each query point (output = query + head), zero at
  initialisation, so an untrained model answers "nothing moved" instead of noise.
- The fusion cross-attention (eq. 3) attends only to the image tokens that show the object
  (`fusion_object_mask`; a token whose pixels are all background, white after matting, is left out),
  with QK-norm (`fusion_qk_norm`). Attending over every token, the object's (2-20% of a view) are
  averaged with identical background tokens: at initialisation the frame-dependent part of the fused
  features is 0.3% of their spread (1.7% with the mask, measured on a demo clip), the decoder learns
  the clip's time-mean pose, and the VAE ignores the images (posterior collapse).
- g_sigma starts with zero weight and bias `logvar_init` = -8 (sigma 0.018): with the default
  initialisation sigma is ~1 against a frame-dependent part of mu of ~0.01, so the decoder sees noise
  where the motion is, learns to ignore z and the KL empties it.
- Two optional locality biases, off by default (the paper's attention is unbiased), each a Gaussian
  of a distance in world units with one learnt width per head (geometric from `bias_width_min` to
  `bias_width_max`): `decoder_anchor_bias` adds -|q - a|^2 / 2w^2 to the decoder's cross-attention
  logits (query point q, anchor a of each latent), so a query reads the latents of the anchors near it;
  `fusion_ray_bias` adds -dist(a, ray)^2 / 2w^2 to the fusion's (eq. 3), the distance from anchor a to
  each image token's mean Pluecker ray, so an anchor reads the tokens that can show it. On 49 `learn`
  clips, 800 steps, `benchmarks/vae_recipes.py`: fed each anchor's true frame-t position in place of
  the images, the VAE stays at the still first frame's L2 without the decoder bias (1.02x) and reaches
  0.54x (0.49x on held-out clips) with it; with the images neither bias leaves the static control
  within 800 steps (docs/BENCHMARKS.md, "which part limits"), and over 4,000 steps both together
  reach 0.78x on the training clips where the unbiased VAE stays at 1.00x (held-out clips 0.98x:
  "with the images, longer"), so the `learn` configurations turn both on; `vae-paper` keeps the
  paper's unbiased attention until a run at its scale is measured. A checkpoint without these
  fields was built without them (`LEGACY`).
Measured on one 6-keyframe clip (the CI test), tiny config, lr 3e-4, 4 seeds, 1000 steps: held-out-point
L2 0.15-0.18x the time-mean control's; the figures on many clips are in docs/BENCHMARKS.md (learning).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import CrossAttentionBlock, SelfAttentionBlock
from model.anchors import anchor_points
from model.embeddings import PointEmbedding
from model.vit import ViT


@dataclass
class VAEConfig:
    num_latents: int = 512      # M
    width: int = 512            # C
    latent_channels: int = 32   # C0
    heads: int = 8
    encoder_depth: int = 8      # L self-attention blocks after fusion (eq. 3)
    decoder_depth: int = 8      # L self-attention blocks of the decoder (eq. 6)
    views: int = 4
    image_size: int = 256
    image_channels: int = 9     # RGB + 6 Pluecker
    patch_size: int = 16
    vit_depth: int = 4
    num_freqs: int = 8
    fusion_object_mask: bool = True   # the fusion (eq. 3) attends only to image tokens that show the object
    fusion_qk_norm: bool = True       # QK-norm in the fusion cross-attention
    logvar_init: float = -8.0         # g_sigma starts at this log-variance everywhere (zero weight)
    fusion_ray_bias: bool = False     # the fusion's logits favour image tokens whose rays pass near the anchor
    bias_width_min: float = 0.05      # the biases' starting widths in world units (P1 in a unit box),
    bias_width_max: float = 0.5       # the first head's and the last's, geometric between
    decoder_anchor_bias: bool = False  # the decoder's queries favour the latents of the anchors near them

    # What a checkpoint saved before a field existed meant by it (the model it holds was built so).
    LEGACY = {"fusion_object_mask": False, "fusion_qk_norm": False, "fusion_ray_bias": False,
              "decoder_anchor_bias": False}

    @classmethod
    def from_saved(cls, saved: dict) -> "VAEConfig":
        return cls(**{**cls.LEGACY, **saved})

    @classmethod
    def tiny(cls) -> "VAEConfig":
        """A few-thousand-parameter configuration for tests."""
        return cls(num_latents=16, width=32, latent_channels=8, heads=2, encoder_depth=1, decoder_depth=1,
                   views=2, image_size=32, patch_size=8, vit_depth=1, num_freqs=4)


class MultiViewEncoder(nn.Module):
    """Enc_mul (eq. 2): per-view ViT, attention across the tokens of all views, pixel-shuffle upsampling.
    views (B, V, channels, H, W) -> (B, V * (2H/p) * (2W/p), C)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        width = cfg.width
        self.views = cfg.views
        self.vit = ViT(cfg.image_channels, cfg.image_size, cfg.patch_size, width, cfg.heads, cfg.vit_depth)
        self.view_embedding = nn.Parameter(torch.randn(cfg.views, 1, width) * 0.02)
        self.across_views = SelfAttentionBlock(width, cfg.heads)
        self.expand = nn.Linear(width, 2 * width)        # pixel_shuffle(2) then leaves 2C / 4 = C/2 channels
        self.restore = nn.Linear(width // 2, width)

    def object_mask(self, views: torch.Tensor) -> torch.Tensor:
        """(B, V * 4 g^2) bool, in the order of forward's tokens (the pixel-shuffled grid of each view):
        True where the token's pixels show the object (ViT.object_mask, which keeps every token of a
        view that shows nothing, so each view set has keys)."""
        return self.vit.object_mask(views.flatten(0, 1), 2 * self.vit.grid).reshape(views.shape[0], -1)

    def token_rays(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's ray, from the views' Pluecker channels averaged over its cell (the pinhole's
        rays share an origin o, so the mean moment is o x the mean direction): unit directions d and
        moments m, each (B, V * 4 g^2, 3), in the order of forward's tokens."""
        cells = 2 * self.vit.grid
        rays = F.adaptive_avg_pool2d(views[:, :, 3:9].flatten(0, 1).float(), cells)   # (B * V, 6, 2g, 2g)
        rays = rays.flatten(2).transpose(1, 2).reshape(views.shape[0], -1, 6)
        norm = torch.linalg.vector_norm(rays[..., :3], dim=-1, keepdim=True).clamp_min(1e-6)
        return rays[..., :3] / norm, rays[..., 3:] / norm

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        batch, num_views = views.shape[:2]
        if num_views != self.views:
            raise ValueError(f"VAE was built for {self.views} views, got views of shape {tuple(views.shape)}")
        offsets = self.view_embedding.repeat(batch, 1, 1)  # (B * V, 1, C), view index fastest like flatten
        tokens = self.vit(views.flatten(0, 1), offsets)    # (B * V, g * g, C)
        per_view = tokens.shape[1]
        tokens = self.across_views(tokens.reshape(batch, num_views * per_view, -1))
        grid = self.vit.grid
        grid_features = self.expand(tokens).reshape(batch * num_views, grid, grid, -1).permute(0, 3, 1, 2)
        finer = F.pixel_shuffle(grid_features, 2)          # (B * V, C/2, 2g, 2g)
        finer = finer.flatten(2).transpose(1, 2)           # (B * V, 4 g^2, C/2)
        return self.restore(finer).reshape(batch, num_views * 4 * per_view, -1)


class VAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        # One point embedding for encoder queries, encoder keys and decoder queries, as in 3DShape2VecSet.
        self.point_embedding = PointEmbedding(width, cfg.num_freqs)
        self.geometry_encoder = CrossAttentionBlock(width, cfg.heads, width)             # eq. 1
        self.multiview_encoder = MultiViewEncoder(cfg)                                   # eq. 2
        self.fusion = CrossAttentionBlock(width, cfg.heads, width, qk_norm=cfg.fusion_qk_norm)  # eq. 3, CroAtt
        # one learnt width per head, spaced geometrically: some heads look at the point, some around it
        log_widths = torch.linspace(math.log(cfg.bias_width_min), math.log(cfg.bias_width_max), cfg.heads)
        if cfg.fusion_ray_bias:
            self.ray_bias_log_width = nn.Parameter(log_widths.clone())
        if cfg.decoder_anchor_bias:
            self.anchor_bias_log_width = nn.Parameter(log_widths.clone())
        self.encoder_blocks = nn.ModuleList(SelfAttentionBlock(width, cfg.heads) for _ in range(cfg.encoder_depth))
        self.to_mean = nn.Linear(width, cfg.latent_channels)                             # eq. 4, g_mu
        self.to_logvar = nn.Linear(width, cfg.latent_channels)                           # eq. 4, g_sigma
        # sigma small at the start: at sigma ~ 1 the frame-dependent part of mu (a few % of |mu| at
        # initialisation) is drowned in the noise, the decoder learns to ignore z and the KL then empties it
        nn.init.zeros_(self.to_logvar.weight)
        nn.init.constant_(self.to_logvar.bias, cfg.logvar_init)
        self.from_latent = nn.Linear(cfg.latent_channels, width)
        self.decoder_blocks = nn.ModuleList(SelfAttentionBlock(width, cfg.heads) for _ in range(cfg.decoder_depth))
        self.query_decoder = CrossAttentionBlock(width, cfg.heads, width)
        self.to_displacement = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 3))
        # Zero displacement at initialisation: the untrained decoder predicts "nothing moved".
        nn.init.zeros_(self.to_displacement[1].weight)
        nn.init.zeros_(self.to_displacement[1].bias)

    def encode(self, p1: torch.Tensor, views: torch.Tensor, anchors: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """p1 (B, N, 3), views (B, V, 9, H, W) -> (mean, logvar), each (B, M, C0). `anchors` (B, M, 3)
        are anchor_points(p1, M), computed here if not given (callers encoding one P1 with many frames'
        views pass them, so FPS runs once per clip)."""
        if anchors is None:
            anchors = anchor_points(p1, self.cfg.num_latents)
        geometry = self.geometry_encoder(self.point_embedding(anchors), self.point_embedding(p1))
        mask = self.multiview_encoder.object_mask(views) if self.cfg.fusion_object_mask else None
        bias = self.ray_bias(anchors, views) if self.cfg.fusion_ray_bias else None
        features = self.fusion(geometry, self.multiview_encoder(views), key_mask=mask, bias=bias)
        for block in self.encoder_blocks:
            features = block(features)
        # Heads in float32 even under autocast: the latents are the diffusion model's data. logvar is
        # clamped as latent-diffusion VAEs do, so exp(logvar) can neither overflow nor vanish.
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            return self.to_mean(features), self.to_logvar(features).clamp(-30.0, 20.0)

    def ray_bias(self, anchors: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """(B, heads, M, tokens): -dist^2 / (2 w_h^2), dist the distance from each anchor point a to each
        token's ray (d, m), |a x d - m|^2 = |a|^2 - (a.d)^2 - 2 a.(d x m) + |m|^2 for unit d, as matmuls
        (no (B, M, tokens, 3) tensor)."""
        d, m = self.multiview_encoder.token_rays(views)
        a = anchors.float()
        along = a @ d.transpose(1, 2)                                               # (B, M, K)
        dist2 = (a.pow(2).sum(-1, keepdim=True) - along.pow(2) - 2 * a @ torch.cross(d, m, dim=-1).transpose(1, 2)
                 + m.pow(2).sum(-1)[:, None, :]).clamp_min(0)
        scale = 0.5 * torch.exp(-2 * self.ray_bias_log_width)                       # 1 / (2 w^2), (heads,)
        return -dist2[:, None] * scale[None, :, None, None]

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterisation (eq. 4): z = mu + sigma * eps, eps ~ N(0, I)."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor, queries: torch.Tensor, chunk_size: int | None = None,
               anchors: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, M, C0), queries (B, Q, 3) frame-1 points -> their positions at frame t (B, Q, 3).

        The latent self-attention (eq. 6) runs once; the per-query cross-attention runs over chunks of
        `chunk_size` queries (all at once if None). Queries never attend to each other, so chunking
        changes memory, not results."""
        latents = self.from_latent(z)
        for block in self.decoder_blocks:
            latents = block(latents)
        chunks = [queries] if chunk_size is None else queries.split(chunk_size, dim=1)
        if self.cfg.decoder_anchor_bias and anchors is None:
            raise ValueError("this VAE's decoder needs the anchor points of P1 (decode(..., anchors=))")
        outputs = []
        for chunk in chunks:
            bias = None
            if self.cfg.decoder_anchor_bias:
                scale = 0.5 * torch.exp(-2 * self.anchor_bias_log_width)
                bias = -torch.cdist(chunk.float(), anchors.float()).pow(2)[:, None] * scale[None, :, None, None]
            features = self.query_decoder(self.point_embedding(chunk), latents, bias=bias)
            outputs.append(chunk + self.to_displacement(features).float())
        return torch.cat(outputs, dim=1)

    def forward(self, p1: torch.Tensor, views: torch.Tensor, sample_posterior: bool = True,
                anchors: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Encode (P1, I_t), decode at the points of P1: {"pred" (B, N, 3), "mean", "logvar", "z"}."""
        mean, logvar = self.encode(p1, views, anchors)
        z = self.sample(mean, logvar) if sample_posterior else mean
        if anchors is None and self.cfg.decoder_anchor_bias:
            anchors = anchor_points(p1, self.cfg.num_latents)
        return {"pred": self.decode(z, p1, anchors=anchors), "mean": mean, "logvar": logvar, "z": z}
