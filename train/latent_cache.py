"""The latent cache: every clip encoded once by a trained VAE, so diffusion training does not run the
encoder in every step. Each input shard gives one output shard of the same name under `out_dir`,
holding the clip's own members plus `latents.npy` (T x M x C0 float16: the posterior mean of every
keyframe), `p1.npy` (N x 3, the points they were encoded with: fixed per clip) and `p1_index.npy`
(their rows of the subdivision map). The diffusion loader reads these shards or the plain ones alike.
"""
from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from dataset.clip_sample import ClipSample
from dataset.loaders import ClipViews, LoaderConfig, dense_map, point_indices
from dataset.shard_writer import encode_tar
from dataset.storage import atomic_write
from model.anchors import anchor_points
from model.vae import VAE


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@torch.no_grad()
def encode_clip(vae: VAE, sample: dict, cfg: LoaderConfig, device) -> dict:
    clip = ClipSample(sample)
    S = dense_map(clip)
    idx = point_indices(clip, S, dataclasses.replace(cfg, resample_points=False), None)
    p1 = (S[idx] @ clip.verts[0]).astype(np.float32)
    clip_views = ClipViews(clip, cfg)
    views = torch.as_tensor(np.stack([clip_views(t) for t in range(clip.num_frames)]), device=device)
    p1_t = torch.as_tensor(p1, device=device)[None]
    anchors = anchor_points(p1_t, vae.cfg.num_latents)           # once for the clip's keyframes
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda"):
        mean, _ = vae.encode(p1_t.expand(clip.num_frames, -1, -1), views, anchors.expand(clip.num_frames, -1, -1))
    return {**sample, "latents.npy": _npy(mean.float().cpu().numpy().astype(np.float16)),
            "p1.npy": _npy(p1), "p1_index.npy": _npy(idx.astype(np.int64))}


def encode_shards(vae: VAE, urls: list[str], out_dir: str, cfg: LoaderConfig, device="cpu") -> list[str]:
    """One cached shard per input shard (same label/split/name); shards already written are kept, so
    an interrupted run continues where it stopped."""
    written = []
    for url in tqdm(urls, desc="encoding clips", unit="shard"):
        parts = os.path.normpath(url).split(os.sep)
        path = os.path.join(out_dir, *parts[-2:])  # <label>/<split>-NNNNNN.tar
        if not os.path.exists(path):
            samples = [encode_clip(vae, s, cfg, device) for s in wds.WebDataset(url, shardshuffle=False)]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, encode_tar(samples))
        written.append(path)
    return written
