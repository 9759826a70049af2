"""Training configurations: named entries of `training.yaml` (beside pipelines.yaml), or a YAML file
of one configuration. Plain dataclasses; an unknown key or a wrong type is an error that names the
file, the configuration and the key. `extends: NAME` starts from configuration NAME (of the same file;
for a file of one configuration, of training.yaml) and merges the entry's own keys into it, mapping
by mapping, so an ablation states only what it changes.

`max_steps: 200000` (the paper configurations) at the paper's batch sizes on a 50k-clip dataset is
200000 x 1152 / 50000 = 4608 passes over the clips for the VAE (one keyframe per example: 154 passes
over the 1.5M clip keyframes) and 200000 x 512 / 50000 = 2048 for the diffusion model. The paper
reports 200 epochs for each without defining one; at one clip per example its diffusion run would be
about 19,500 steps."""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field

import yaml

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


def load_train_config(spec: str, kind: str | None = None) -> TrainConfig:
    """`spec` is NAME (in training.yaml), FILE:NAME, or FILE holding one configuration."""
    path, name = DEFAULT_FILE, spec
    if ":" in spec:
        path, name = spec.rsplit(":", 1)
    elif os.path.exists(spec):
        path, name = spec, None
    doc = _read(path)
    if name is not None:
        if not isinstance(doc, dict) or name not in doc:
            raise TrainConfigError(f"{path}: no training configuration named {name!r} "
                                   f"(have: {', '.join(sorted(doc or {}))})")
        entry, named = doc[name], doc
    else:
        entry, named = doc, None
    where = f"{path}" + (f": configuration {name!r}" if name else "")
    data = _resolve(entry, where, path, named, [name])
    cfg = _build(TrainConfig, {**data, "name": name or os.path.basename(path)}, where, "")
    if cfg.kind not in ("vae", "diffusion"):
        raise TrainConfigError(f"{where}: key 'kind' must be 'vae' or 'diffusion', got {cfg.kind!r}")
    if kind is not None and cfg.kind != kind:
        raise TrainConfigError(f"{where} is a {cfg.kind} configuration, not {kind}")
    return cfg


def _read(path: str):
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as exc:
        raise TrainConfigError(f"{path}: cannot read training configurations ({exc.strerror})") from None


def _resolve(entry, where: str, path: str, named: dict | None, chain: list) -> dict:
    """The entry with its `extends:` chain merged in (the entry's own keys win, mapping by mapping)."""
    if not isinstance(entry, dict):
        raise TrainConfigError(f"{where}: expected a mapping")
    entry = dict(entry)
    base = entry.pop("extends", None)
    if base is None:
        return entry
    if named is None:  # a file of one configuration extends a configuration of training.yaml
        path, named = DEFAULT_FILE, _read(DEFAULT_FILE)
    if not isinstance(base, str) or base not in (named or {}):
        raise TrainConfigError(f"{where}: extends {base!r}, which is not a configuration of {path}")
    if base in chain:
        raise TrainConfigError(f"{where}: extends {base!r} in a cycle ({' -> '.join(map(str, chain + [base]))})")
    return _merge(_resolve(named[base], f"{path}: configuration {base!r}", path, named, chain + [base]), entry)


def _merge(base: dict, own: dict) -> dict:
    out = dict(base)
    for key, value in own.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build(cls, data: dict, where: str, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = prefix + key
        if key not in names:
            raise TrainConfigError(f"{where}: unknown key {dotted!r} (allowed here: {', '.join(sorted(names))})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise TrainConfigError(f"{where}: key {dotted!r}: expected a mapping, got {value!r}")
            kwargs[key] = _build(tp, value, where, dotted + ".")
        elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            kwargs[key] = float(value)
        elif isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            kwargs[key] = value
        else:
            raise TrainConfigError(f"{where}: key {dotted!r}: expected {tp.__name__}, got {value!r}")
    return cls(**kwargs)
