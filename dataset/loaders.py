"""Training batches straight from shard URLs (local paths, brace patterns or any URL webdataset
opens): no run directory, no cache. Each worker streams its share of the shards through a sample
shuffle buffer and batches inside the worker, so only the keyframes a sample uses are decoded.

Every random choice is a function of (seed, epoch, rank, worker, position in the stream): an epoch
is reproducible, and a resumed run skips the batches it already trained on without decoding them.

- VAE example: P1 (N points of keyframe 0, random + FPS), Pt (the same surface points at a random
  keyframe t), the 4 views of keyframe t as RGB + Pluecker rays (9 channels). `vae_frames` > 1: that
  many examples of each clip read, at distinct keyframes with the same P1, side by side in a batch.
- Diffusion example: P1, T' sorted random keyframes, the monocular view of each (`video_view`), and
  either the VAE inputs of those keyframes or, from a latent cache, their latents.
"""
from __future__ import annotations

import io
import logging
import random
import zlib
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dataset.clip_sample import ClipSample
from dataset.point_sampling import farthest_points, sample_point_indices
from dataset.subdivision import subdivision_map
from dataset.storage import register_with_webdataset
from dataset.view_tensors import camera_rays, matted_rgb, vae_views

register_with_webdataset()  # s3:// shards, also in DataLoader worker processes that import this module

log = logging.getLogger(__name__)


@dataclass
class LoaderConfig:
    num_points: int = 2048        # N
    fps_fraction: float = 0.5     # share of P1 picked by farthest point sampling, the rest at random
    resample_points: bool = True  # False: each clip's P1 is drawn once, from (seed, key), every epoch alike
    image_size: int = 256         # views are resized to this (the model's input size)
    frames_per_clip: int = 10     # diffusion: T' = T / 3 keyframes per sample
    vae_frames: int = 1           # VAE: examples per clip read, at distinct keyframes with one P1 (a divisor of the batch)
    video_view: int = 0           # diffusion: the view that plays the monocular video
    shuffle_buffer: int = 64      # samples held for shuffling, per worker
    resampled: bool = False       # draw shards with replacement (multi-node: every rank sees data)
    epoch_batches: int = 0        # resampled: batches per worker in a nominal epoch (0: endless)
    anchors: int = 0              # M > 0: each example carries P1's M anchor points (model/anchors.py's FPS)
    seed: int = 0


def point_indices(clip: ClipSample, S, cfg: LoaderConfig, rng: np.random.Generator) -> np.ndarray:
    """P1's rows of the subdivision map: new ones per sample, or fixed per clip (validation, latent
    cache, overfitting one clip)."""
    if not cfg.resample_points:
        rng = np.random.default_rng([cfg.seed, zlib.crc32(clip.key.encode())])
    return sample_point_indices(S @ clip.verts[0], cfg.num_points, cfg.fps_fraction, rng)


def dense_map(clip: ClipSample):
    return subdivision_map(clip.faces, clip.verts.shape[1], clip.meta.get("dense", {}).get("min_points", 50_000))[0]


class ClipViews:
    """A clip's VAE views of any keyframe (RGB + Pluecker rays), its rays computed once."""

    def __init__(self, clip: ClipSample, cfg: LoaderConfig):
        self.clip, self.size = clip, cfg.image_size
        self.rays = camera_rays(clip.cameras, cfg.image_size)

    def __call__(self, t: int, frame: np.ndarray | None = None) -> np.ndarray:
        return vae_views(self.clip.frame(t) if frame is None else frame, self.rays, self.size)


def clip_video(clip: ClipSample, view: int, size: int) -> np.ndarray:
    """(T, 3, size, size): view `view` of every keyframe, matted: the clip's monocular video."""
    return np.stack([matted_rgb(clip.frame(t)[view], size) for t in range(clip.num_frames)])


def with_anchors(example: dict, cfg: LoaderConfig) -> dict:
    """The example with P1's `cfg.anchors` farthest-point samples from its first point (what
    model.anchors.anchor_points computes: the same algorithm, float32, ties to the lowest index),
    so the training step runs no FPS loop."""
    if cfg.anchors:
        p1 = np.asarray(example["p1"], dtype=np.float32)
        example["anchors"] = p1[farthest_points(p1, cfg.anchors, start=0)]
    return example


def vae_examples(clip: ClipSample, cfg: LoaderConfig, rng: np.random.Generator) -> list[dict]:
    """`cfg.vae_frames` examples of one clip: one P1, distinct random keyframes (with replacement
    only when the clip has fewer keyframes)."""
    S = dense_map(clip)
    rows = S[point_indices(clip, S, cfg, rng)]
    k = cfg.vae_frames
    times = [int(rng.integers(clip.num_frames))] if k == 1 else \
        rng.choice(clip.num_frames, k, replace=k > clip.num_frames).tolist()
    views = ClipViews(clip, cfg)
    p1 = rows @ clip.verts[0]
    anchored = with_anchors({"p1": p1}, cfg)
    return [{**anchored, "key": clip.key, "t": t, "pt": rows @ clip.verts[t], "views": views(t)} for t in times]


def vae_clip_batch(clip: ClipSample, cfg: LoaderConfig) -> dict:
    """Every keyframe of one clip as a VAE batch (one P1, fixed per clip): per-frame evaluation, and
    overfitting one clip."""
    S = dense_map(clip)
    rows = S[point_indices(clip, S, dataclass_replace(cfg, resample_points=False), None)]
    views = ClipViews(clip, cfg)
    p1 = rows @ clip.verts[0]
    return collate([{"key": clip.key, "t": t, "p1": p1, "pt": rows @ clip.verts[t], "views": views(t)}
                    for t in range(clip.num_frames)])


def diffusion_example(clip: ClipSample, cfg: LoaderConfig, rng: np.random.Generator,
                      sample: dict | None = None, true_points: bool = False) -> dict:
    """With a latent-cache sample (members `latents.npy`, `p1.npy`), its latents and the P1 they were
    encoded with; otherwise P1 and the VAE views of each chosen keyframe, for encoding in the step.
    Training reads neither the dense points nor P_t: `true_points` adds P_t of the chosen keyframes
    (`points`, T' x N x 3) for evaluation and tests, and only then does a cached sample rebuild the
    subdivision map."""
    T = clip.num_frames
    if cfg.frames_per_clip > T:
        raise ValueError(f"{clip.key}: {T} keyframes, fewer than frames_per_clip={cfg.frames_per_clip}")
    frames = np.sort(rng.choice(T, cfg.frames_per_clip, replace=False))
    decoded = [clip.frame(int(t)) for t in frames]
    out = {"key": clip.key, "frames": frames,
           "video": np.stack([matted_rgb(f[cfg.video_view], cfg.image_size) for f in decoded])}
    S = None
    if sample is not None and "latents.npy" in sample:
        out["latents"] = np.load(io.BytesIO(sample["latents.npy"])).astype(np.float32)[frames]
        out["p1"] = np.load(io.BytesIO(sample["p1.npy"])).astype(np.float32)
        idx = np.load(io.BytesIO(sample["p1_index.npy"]))
    else:
        S = dense_map(clip)  # P1 is drawn from the dense points of keyframe 0
        idx = point_indices(clip, S, cfg, rng)
        out["p1"] = S[idx] @ clip.verts[0]
        views = ClipViews(clip, cfg)
        out["views"] = np.stack([views(int(t), f) for t, f in zip(frames, decoded)])
    if true_points:
        rows = (dense_map(clip) if S is None else S)[idx]
        out["points"] = np.stack([rows @ clip.verts[int(t)] for t in frames])
    return with_anchors(out, cfg)


def collate(examples: list[dict]) -> dict:
    out = {}
    for k in examples[0]:
        values = [e[k] for e in examples]
        out[k] = values if isinstance(values[0], str) else torch.as_tensor(np.stack(values)).float() \
            if np.asarray(values[0]).dtype.kind == "f" else torch.as_tensor(np.stack(values))
    return out


class ClipBatches(IterableDataset):
    """Batches of VAE (`kind="vae"`) or diffusion (`kind="diffusion"`) examples from shard URLs."""

    def __init__(self, urls, kind: str, cfg: LoaderConfig, batch_size: int, drop_last: bool = True):
        if kind not in ("vae", "diffusion"):
            raise ValueError(f"kind must be 'vae' or 'diffusion', not {kind!r}")
        if kind == "vae" and (cfg.vae_frames < 1 or batch_size % cfg.vae_frames):
            raise ValueError(f"data.vae_frames={cfg.vae_frames} must divide batch_size={batch_size}: "
                             "a batch holds whole groups of one clip's frames")
        self.urls = urls if isinstance(urls, (list, tuple)) else [urls]
        self.kind, self.cfg, self.batch_size, self.drop_last = kind, cfg, batch_size, drop_last
        self.epoch, self.skip_batches = 0, 0

    def set_position(self, epoch: int, skip_batches: int = 0) -> None:
        """Where the next iteration starts: this epoch, after `skip_batches` of its batches (a resumed run)."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def _stream_seed(self) -> list[int]:
        info = get_worker_info()
        worker = info.id if info else 0
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return [self.cfg.seed, self.epoch, rank, worker]

    def _shards(self):
        seed = self.cfg.seed * 1_000_003 + self.epoch
        if self.cfg.resampled:
            return [wds.ResampledShards(self.urls, seed=seed, deterministic=True)]
        return [wds.SimpleShardList(self.urls), wds.detshuffle(bufsize=len(self.urls) or 1, seed=self.cfg.seed,
                                                               epoch=self.epoch - 1),
                wds.split_by_node, wds.split_by_worker]

    def _examples(self, samples):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # Batch j of the loader comes from worker j % workers (round robin): skip this worker's share
        # (in samples: a VAE sample gives vae_frames examples, a divisor of the batch).
        per_sample = self.cfg.vae_frames if self.kind == "vae" else 1
        skip = len(range(worker, self.skip_batches, workers)) * self.batch_size // per_sample
        for i, sample in enumerate(samples):
            if i < skip:
                continue
            rng = np.random.default_rng(self._stream_seed() + [i])
            try:
                clip = ClipSample(sample)
                if self.kind == "vae":
                    yield from vae_examples(clip, self.cfg, rng)
                else:
                    yield diffusion_example(clip, self.cfg, rng, sample)
            except Exception as exc:  # one unreadable sample must not end a training run
                log.warning("skipping sample %s: %s: %s", sample.get("__key__"), type(exc).__name__, exc)

    def __iter__(self):
        stages = self._shards() + [
            wds.tarfile_to_samples(),
            wds.shuffle(self.cfg.shuffle_buffer, initial=self.cfg.shuffle_buffer,
                        rng=random.Random(str(self._stream_seed()))) if self.cfg.shuffle_buffer > 1 else None,
            self._examples,
            wds.batched(self.batch_size, collation_fn=collate, partial=not self.drop_last),
        ]
        pipeline = wds.DataPipeline(*[s for s in stages if s is not None])
        if self.cfg.resampled and self.cfg.epoch_batches:
            pipeline = pipeline.with_epoch(self.cfg.epoch_batches)
        return iter(pipeline)


def make_loader(urls, kind: str, cfg: LoaderConfig, batch_size: int, num_workers: int = 0,
                epoch: int = 0, skip_batches: int = 0, drop_last: bool = True) -> DataLoader:
    data = ClipBatches(urls, kind, cfg, batch_size, drop_last)
    data.set_position(epoch, skip_batches)
    # Its own generator: a DataLoader otherwise draws a base seed from the global torch RNG on every
    # new iterator, and a resumed run (which starts one more iterator) would draw different noise.
    return DataLoader(data, batch_size=None, num_workers=num_workers, persistent_workers=False,
                      pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
