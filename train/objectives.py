"""What one training step minimises, as modules (so DDP wraps the whole step's forward).

- VAE: L_def + 1e-3 L_reg (paper eq. 5, 7) on (P1, views of frame t) -> P_t.
- Diffusion: the EDM loss (paper eq. 8) on the latents of T' keyframes, conditioned on P1 and the
  frames' monocular views. Latents come from a latent cache, or from the frozen VAE encoder (posterior
  mean) in the step; either way they are normalised, z' = (z - mean) / std * sigma_data, with the
  mean and std estimated once at the start of training and kept in the checkpoint.
"""
from __future__ import annotations

import torch
from torch import nn

from model.denoiser import Denoiser
from model.edm import EDMConfig, EDMPrecond, edm_loss, heun_sample
from model.vae import VAE


class VAEObjective(nn.Module):
    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    def forward(self, batch: dict) -> dict:
        return self.vae(batch["p1"], batch["views"], batch["pt"])


class DiffusionObjective(nn.Module):
    def __init__(self, denoiser: Denoiser, vae: VAE, edm: EDMConfig):
        super().__init__()
        self.precond = EDMPrecond(denoiser, edm.sigma_data)
        self.vae = vae.eval().requires_grad_(False)
        self.edm = edm
        self.register_buffer("latent_mean", torch.zeros(()))
        self.register_buffer("latent_std", torch.ones(()))

    @torch.no_grad()
    def raw_latents(self, batch: dict) -> torch.Tensor:
        """(B, T', M, C0): cached, or the VAE posterior mean of each chosen keyframe."""
        if "latents" in batch:
            return batch["latents"].float()
        views = batch["views"]                                    # (B, T', V, 9, H, W)
        B, T = views.shape[:2]
        p1 = batch["p1"].unsqueeze(1).expand(-1, T, -1, -1).flatten(0, 1)
        mean, _ = self.vae.encode(p1, views.flatten(0, 1))
        return mean.float().view(B, T, *mean.shape[1:])

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std * self.edm.sigma_data

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.edm.sigma_data * self.latent_std + self.latent_mean

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        y = self.normalise(self.raw_latents(batch))
        return {"loss": edm_loss(self.precond, y, self.edm, generator, p1=batch["p1"], video=batch["video"])}


@torch.no_grad()
def generate_latents(precond: EDMPrecond, objective: DiffusionObjective, p1: torch.Tensor, video: torch.Tensor,
                     num_latents: int, edm: EDMConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Latents (B, T, M, C0) of the frames of `video` (B, T, 3, H, W) for the rest points p1, by the
    Heun sampler from pure noise, in the VAE's own latent scale."""
    B, T = video.shape[:2]
    shape = (B, T, num_latents, objective.vae.cfg.latent_channels)
    condition = precond.net.condition(p1, video, num_latents)  # once, not at each of the 35 evaluations
    y = heun_sample(precond, shape, edm, generator, condition=condition)
    return objective.denormalise(y)
