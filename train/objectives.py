"""What one training step minimises, as modules (so DDP wraps the whole step's forward), and what else
differs between the two models' training. The Trainer calls only the `Objective` interface and never
asks which model it trains: each objective names the module whose weights it trains and checkpoints,
the state it adds to a checkpoint, its preparation before the first step, its work after each step,
its validation values and (diffusion) its sampler.

- VAE: L_def + 1e-3 L_reg (paper eq. 5, 7) on (P1, views of frame t) -> P_t.
- Diffusion: the EDM loss (paper eq. 8) on the latents of T' keyframes, conditioned on P1 and the
  frames' monocular views. The anchor points of P1 are computed once per clip and serve the encoder
  and the denoiser alike.

Where the paper's text is open or we depart from it: the diffusion targets are the VAE's posterior
means (not samples), from a latent cache or the frozen encoder in the step, scaled by one global
statistic, z' = (z - mean) / std * sigma_data, with a scalar mean and std estimated once at the start
of training (all ranks pooled) and kept in the checkpoint.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dataset.loaders import clip_video, vae_clip_batch
from model.anchors import anchor_points
from model.denoiser import Denoiser
from model.edm import EDMConfig, EDMPrecond, edm_loss, heun_sample
from model.vae import VAE
from train import motion_diagnostics
from train.metrics import chamfer_distance, per_point_l2


@dataclass
class VAELossConfig:
    mse_weight: float = 1.0     # 0 with dis_weight > 0: the DIS-only row of the paper's Table 2
    dis_weight: float = 0.1     # paper eq. 7: lambda
    kl_weight: float = 1e-3     # paper: KL weight 0.001


def vae_loss(out: dict[str, torch.Tensor], pt: torch.Tensor, cfg: VAELossConfig) -> dict[str, torch.Tensor]:
    """L_def (eq. 7) + kl_weight * L_reg (eq. 5) of a VAE output against the true P_t, in float32."""
    error = out["pred"].float() - pt.float()
    mse = error.pow(2).mean()                                   # MSE over points and coordinates
    dis = torch.linalg.vector_norm(error, dim=-1).mean()        # DIS: mean Euclidean distance per point
    mean, logvar = out["mean"].float(), out["logvar"].float()
    kl = (0.5 * (mean.pow(2) + logvar.exp() - logvar - 1)).mean()  # eq. 5, per latent channel
    loss = cfg.mse_weight * mse + cfg.dis_weight * dis + cfg.kl_weight * kl
    return {"loss": loss, "mse": mse, "dis": dis, "kl": kl}


class Objective(nn.Module):
    """The interface the Trainer uses. The defaults are those of an objective with nothing extra."""

    ready = True  # False until prepare() (or a checkpoint) has set what the first step needs

    @property
    def trained(self) -> nn.Module:
        """The module whose weights are trained: a checkpoint's "model"."""
        raise NotImplementedError

    def prepare(self, batches: Iterable[dict], mean_across_ranks: Callable[[float], float]) -> str:
        """Runs before the first step of a fresh run; returns a line for the log."""
        self.ready = True
        return ""

    def after_step(self) -> None:
        """Runs after each optimizer step."""

    def extra_state(self) -> dict:
        """What a checkpoint holds beside the trained weights."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        self.ready = True

    def validation(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-sample validation values (B,) of one batch."""
        raise NotImplementedError

    def clip_validation(self, clip, data, generator: torch.Generator) -> dict[str, float]:
        """Figures of one whole held-out clip (a ClipSample) against the answers that need no learning
        (train/motion_diagnostics.py); `data` is the LoaderConfig."""
        return {}


class VAEObjective(Objective):
    def __init__(self, vae: VAE, loss: VAELossConfig | None = None):
        super().__init__()
        self.vae = vae
        self.loss = loss or VAELossConfig()

    @property
    def trained(self) -> nn.Module:
        return self.vae

    def forward(self, batch: dict) -> dict:
        return vae_loss(self.vae(batch["p1"], batch["views"], anchors=batch.get("anchors")), batch["pt"], self.loss)

    def validation(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Chamfer and per-point L2 of the reconstruction from the posterior mean, and the loss."""
        out = self.vae(batch["p1"], batch["views"], sample_posterior=False)
        batch_size = len(batch["p1"])
        return {"chamfer": chamfer_distance(out["pred"], batch["pt"]), "l2": per_point_l2(out["pred"], batch["pt"]),
                "loss": vae_loss(out, batch["pt"], self.loss)["loss"].expand(batch_size)}

    def clip_validation(self, clip, data, generator: torch.Generator) -> dict[str, float]:
        """The reconstruction of every keyframe from its own views: L2 against the static and time-mean
        controls, the latents' and the decoded motion's spread over frames, and the view swap."""
        device = next(self.vae.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vae_clip_batch(clip, data).items()}
        return motion_diagnostics.vae_clip_scores(self.vae, batch)


class DiffusionObjective(Objective):
    """The EDM-preconditioned denoiser over the latents of a frozen VAE. With `ema_decay` (training)
    it keeps an EMA copy of the preconditioned denoiser, which validation and sampling use."""

    def __init__(self, denoiser: Denoiser, vae: VAE, edm: EDMConfig, ema_decay: float | None = None,
                 stats_batches: int = 8):
        super().__init__()
        if denoiser.cfg.latent_channels != vae.cfg.latent_channels:
            raise ValueError(f"the denoiser's latent_channels ({denoiser.cfg.latent_channels}) differs from the "
                             f"VAE's latent_channels C0 ({vae.cfg.latent_channels}): set denoiser.latent_channels: "
                             f"{vae.cfg.latent_channels} in the diffusion configuration")
        self.precond = EDMPrecond(denoiser, edm.sigma_data)
        self.vae = vae.eval().requires_grad_(False)
        self.edm = edm
        self.ema_decay = ema_decay
        self.ema = copy.deepcopy(self.precond).eval().requires_grad_(False) if ema_decay is not None else None
        self.stats_batches = stats_batches
        self.register_buffer("latent_mean", torch.zeros(()))
        self.register_buffer("latent_std", torch.ones(()))
        self.ready = False

    @property
    def trained(self) -> nn.Module:
        return self.precond.net

    def train(self, mode: bool = True) -> "DiffusionObjective":
        super().train(mode)
        self.vae.eval()  # frozen: its latents are the data
        if self.ema is not None:
            self.ema.eval()
        return self

    def anchors(self, p1: torch.Tensor) -> torch.Tensor:
        return anchor_points(p1, self.vae.cfg.num_latents)

    @torch.no_grad()
    def raw_latents(self, batch: dict, anchors: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T', M, C0): cached, or the VAE posterior mean of each chosen keyframe."""
        if "latents" in batch:
            return batch["latents"].float()
        views = batch["views"]                                    # (B, T', V, 9, H, W)
        B, T = views.shape[:2]
        anchors = self.anchors(batch["p1"]) if anchors is None else anchors

        def per_frame(x: torch.Tensor) -> torch.Tensor:  # one clip's tensor for each of its T' frames
            return x.unsqueeze(1).expand(-1, T, *x.shape[1:]).flatten(0, 1)

        mean, _ = self.vae.encode(per_frame(batch["p1"]), views.flatten(0, 1), per_frame(anchors))
        return mean.float().view(B, T, *mean.shape[1:])

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std * self.edm.sigma_data

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        return y / self.edm.sigma_data * self.latent_std + self.latent_mean

    def _loss(self, precond: EDMPrecond, batch: dict, generator: torch.Generator | None) -> torch.Tensor:
        anchors = batch["anchors"] if "anchors" in batch else self.anchors(batch["p1"])
        y = self.normalise(self.raw_latents(batch, anchors))
        condition = precond.net.condition(batch["p1"], batch["video"], anchors)
        return edm_loss(precond, y, self.edm, generator, condition=condition)

    def forward(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        return {"loss": self._loss(self.precond, batch, generator)}

    @torch.no_grad()
    def prepare(self, batches: Iterable[dict], mean_across_ranks: Callable[[float], float]) -> str:
        """The mean and std of the latents over the first `stats_batches` batches (all ranks pooled)."""
        zs = []
        for i, batch in enumerate(batches):
            if i == self.stats_batches:
                break
            zs.append(self.raw_latents(batch).float().flatten())
        if not zs:
            raise ValueError("no diffusion batches to estimate the latent statistics from: fewer clips than "
                             "batch_size?")
        z = torch.cat(zs)
        mean = mean_across_ranks(float(z.mean()))
        std = math.sqrt(mean_across_ranks(float(((z - mean) ** 2).mean())))
        self.latent_mean.fill_(mean)
        self.latent_std.fill_(max(std, 1e-6))
        self.ready = True
        return f"latent statistics: mean {mean:.4f}, std {std:.4f}"

    @torch.no_grad()
    def after_step(self) -> None:
        if self.ema is not None:
            for e, p in zip(self.ema.parameters(), self.precond.parameters()):
                e.lerp_(p, 1 - self.ema_decay)

    def extra_state(self) -> dict:
        return {"ema": self.ema.net.state_dict() if self.ema is not None else None,
                "latent_stats": [float(self.latent_mean), float(self.latent_std)]}

    def load_extra_state(self, state: dict) -> None:
        if self.ema is not None:
            self.ema.net.load_state_dict(state["ema"])
        mean, std = state["latent_stats"]
        self.latent_mean.fill_(mean)
        self.latent_std.fill_(std)
        self.ready = True

    @property
    def sampling_precond(self) -> EDMPrecond:
        return self.ema if self.ema is not None else self.precond

    def validation(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The EDM loss of the sampling (EMA) denoiser; a fixed `generator` makes steps comparable."""
        loss = self._loss(self.sampling_precond, batch, generator)
        return {"loss": loss.expand(len(batch["p1"]))}

    @torch.no_grad()
    def clip_validation(self, clip, data, generator: torch.Generator) -> dict[str, float]:
        """Every keyframe generated from the clip's monocular video and decoded at P1: L2 against the
        static and time-mean controls, the decoded motion's spread and frame following."""
        device = self.latent_mean.device
        batch = vae_clip_batch(clip, data)
        p1, true = batch["p1"][:1].to(device), batch["pt"].to(device)
        video = torch.as_tensor(clip_video(clip, data.video_view, self.precond.net.cfg.image_size), device=device)[None]
        anchors = self.anchors(p1)                                                  # once: the sampler's and the decoder's
        z = self.sample(p1, video, generator, anchors)[0]                           # (T, M, C0)
        pred = self.vae.decode(z, p1.expand(len(z), -1, -1), anchors=anchors.expand(len(z), -1, -1))
        return motion_diagnostics.scores(pred, true)

    @torch.no_grad()
    def sample(self, p1: torch.Tensor, video: torch.Tensor, generator: torch.Generator | None = None,
               anchors: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, T, M, C0) of the frames of `video` (B, T, 3, H, W) for the rest points p1 (B, N, 3),
        by the Heun sampler from pure noise, in the VAE's own latent scale. `anchors`: P1's anchor points
        when the caller has them (it decodes with them too), else computed here."""
        precond = self.sampling_precond
        B, T = video.shape[:2]
        shape = (B, T, self.vae.cfg.num_latents, self.vae.cfg.latent_channels)
        # The condition once per clip, not at each of the sampler's 35 evaluations.
        condition = precond.net.condition(p1, video, self.anchors(p1) if anchors is None else anchors)
        return self.denormalise(heun_sample(precond, shape, self.edm, generator, condition=condition))
