"""Checkpoints: model, optimizer, scheduler, the objective's extra state (EMA, latent statistics),
step, data position and every RNG state, written atomically (temporary name, then rename) so a kill
never leaves a torn file; `latest` finds the newest for `--resume`. Also where a trained model comes
back from its file (`load_vae`, `load_diffusion`) and where a training run's objective is built."""
from __future__ import annotations

import glob
import os
import random

import numpy as np
import torch

from model.denoiser import Denoiser, DenoiserConfig
from model.edm import EDMConfig
from model.vae import VAE, VAEConfig
from train.config import TrainConfig
from train.objectives import DiffusionObjective, Objective, VAEObjective


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def path_for(out_dir: str, step: int) -> str:
    return os.path.join(out_dir, "checkpoints", f"step-{step:08d}.pt")


def save(out_dir: str, step: int, state: dict) -> str:
    path = path_for(out_dir, step)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:  # synced before the rename, as dataset.storage.atomic_write does
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def latest(out_dir: str) -> str | None:
    found = sorted(glob.glob(os.path.join(out_dir, "checkpoints", "step-*.pt")))
    return found[-1] if found else None


def load(path: str, map_location="cpu") -> dict:
    # Our own files, holding numpy/python RNG states too: not loadable with weights_only.
    return torch.load(path, map_location=map_location, weights_only=False)


def load_vae(path: str, device) -> VAE:
    state = load(path)
    cfg = state["config"]
    if cfg["kind"] != "vae":
        raise ValueError(f"{path} is a {cfg['kind']} checkpoint, not a VAE")
    vae = VAE(VAEConfig.from_saved(cfg["vae"]))
    vae.load_state_dict(state["model"])
    return vae.to(device).eval()


def load_diffusion(path: str, vae: VAE, device) -> tuple[DiffusionObjective, dict]:
    """The denoiser with its EMA weights, the latent statistics it was trained with, and its config."""
    state = load(path)
    cfg = state["config"]
    if cfg["kind"] != "diffusion":
        raise ValueError(f"{path} is a {cfg['kind']} checkpoint, not a diffusion model")
    denoiser = Denoiser(DenoiserConfig.from_saved(cfg["denoiser"]))
    denoiser.load_state_dict(state["ema"] or state["model"])
    objective = DiffusionObjective(denoiser, vae, EDMConfig(**cfg["edm"]))
    objective.load_extra_state({"latent_stats": state["latent_stats"]})
    return objective.to(device).eval(), cfg


def new_objective(cfg: TrainConfig, vae_checkpoint: str | None = None) -> Objective:
    """The objective a fresh training run of `cfg` starts from; diffusion takes the trained VAE (whose
    configuration then replaces cfg.vae, so the run's config.json records it)."""
    if cfg.kind == "vae":
        return VAEObjective(VAE(cfg.vae), cfg.vae_loss)
    if not vae_checkpoint:
        raise ValueError("diffusion training needs the trained VAE: --vae CHECKPOINT")
    vae = load_vae(vae_checkpoint, "cpu")
    cfg.vae = vae.cfg
    return DiffusionObjective(Denoiser(cfg.denoiser), vae, cfg.edm, cfg.ema_decay, cfg.latent_stats_batches)
