"""Training configurations: named entries of `training.yaml` (beside pipelines.yaml), or a YAML file
of one configuration. Plain dataclasses, validated as pipelines.yaml is (dataset/config_files.py,
pydantic); an unknown key or a wrong type is an error that names the file, the configuration and the key. `extends: NAME` starts from configuration NAME (of the same file;
for a file of one configuration, of training.yaml) and merges the entry's own keys into it, mapping
by mapping, so an ablation states only what it changes.

`max_steps: 200000` (the paper configurations) at the paper's batch sizes on a 50k-clip dataset is
200000 x 1152 / 50000 = 4608 passes over the clips for the VAE (one keyframe per example: 154 passes
over the 1.5M clip keyframes) and 200000 x 512 / 50000 = 2048 for the diffusion model. The paper
reports 200 epochs for each without defining one; at one clip per example its diffusion run would be
about 19,500 steps."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from dataset import config_files
from dataset.loaders import LoaderConfig
from model.denoiser import DenoiserConfig
from model.edm import EDMConfig
from model.vae import VAEConfig
from train.objectives import VAELossConfig

DEFAULT_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training.yaml")


class TrainConfigError(ValueError):
    pass


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 1000      # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0        # global gradient-norm clip; 0 = off


@dataclass
class TrainConfig:
    name: str = ""
    kind: str = "vae"             # vae | diffusion
    vae: VAEConfig = field(default_factory=VAEConfig)              # the VAE trained (kind vae) or used
    vae_loss: VAELossConfig = field(default_factory=VAELossConfig)  # kind vae: eq. 7 and 5 weights
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    data: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 8           # per process
    num_workers: int = 4          # loader processes per training process
    max_steps: int = 100_000
    ema_decay: float = 0.9999     # diffusion: EMA of the denoiser's weights (sampling uses it)
    latent_stats_batches: int = 8  # diffusion: batches that estimate the latents' mean and std
    log_every: int = 50
    checkpoint_every: int = 1000
    val_every: int = 1000
    val_batches: int = 8
    val_clips: int = 4            # whole held-out clips scored against the static and time-mean controls
    seed: int = 0
    compile: bool = False         # torch.compile the training step's forward (GPUs; first steps compile)


def load_train_config(spec: str, kind: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """`spec` is NAME (in training.yaml), FILE:NAME, or FILE holding one configuration; `overrides`
    ("dotted.key=value", `train --set`) are applied before validation, checked as the file is."""
    path, name = DEFAULT_FILE, spec
    if ":" in spec:
        path, name = spec.rsplit(":", 1)
    elif os.path.exists(spec):
        path, name = spec, None
    doc = config_files.read_yaml(path, "training configurations", TrainConfigError)
    if name is not None:
        if not isinstance(doc, dict) or name not in doc:
            raise TrainConfigError(f"{path}: no training configuration named {name!r} "
                                   f"(have: {', '.join(sorted(doc or {}))})")
        entry, named = doc[name], doc
    else:
        entry, named = doc, None
    where = f"{path}" + (f": configuration {name!r}" if name else "")
    data = config_files.resolve(entry, where, path, named, [name], TrainConfigError, base_file=DEFAULT_FILE)
    for item in overrides or []:
        config_files.apply_override(data, item, where, TrainConfigError)
    cfg = config_files.build(TrainConfig, {**data, "name": name or os.path.basename(path)}, where, TrainConfigError)
    if cfg.kind not in ("vae", "diffusion"):
        raise TrainConfigError(f"{where}: key 'kind' must be 'vae' or 'diffusion', got {cfg.kind!r}")
    if kind is not None and cfg.kind != kind:
        raise TrainConfigError(f"{where} is a {cfg.kind} configuration, not {kind}")
    return cfg
