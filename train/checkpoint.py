"""Checkpoints: model, optimizer, scheduler, EMA, step, data position and every RNG state, written
atomically (temporary name, then rename) so a kill never leaves a torn file; `latest` finds the
newest for `--resume`."""
from __future__ import annotations

import glob
import os
import random

import numpy as np
import torch


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
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def latest(out_dir: str) -> str | None:
    found = sorted(glob.glob(os.path.join(out_dir, "checkpoints", "step-*.pt")))
    return found[-1] if found else None


def load(path: str, map_location="cpu") -> dict:
    # Our own files, holding numpy/python RNG states too: not loadable with weights_only.
    return torch.load(path, map_location=map_location, weights_only=False)
