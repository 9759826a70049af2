"""Which part of the VAE keeps it from learning many clips? Trains one VAE recipe for a fixed number of
steps on a pipeline output's training clips, all held in memory (every keyframe of each clip with one
fixed P1: no loader cost, so recipes compare by steps, not by the machine's load), and prints the
figures of train/motion_diagnostics.py on 8 training and 8 held-out clips at each evaluation.

    python benchmarks/vae_recipes.py --data runs/learn60 [--config vae-learn] [--steps 800] [--lr 3e-4]
        [--vae KEY=VALUE ...] [--oracle] [--eval-every 200] [--seed 0]

`--vae` overrides a field of the configuration's VAE (e.g. `--vae decoder_anchor_bias=True`).
`--oracle` replaces the images by the answer: the encoder adds, to each anchor's geometry token, the
embedding of that anchor's true position at frame t. An oracle run that stays at the static control
says the decoder cannot yet use what the encoder would give it; one that learns says the images are
what is not read. The schedule is the trainer's (linear warm-up over 100 steps, cosine to 5%), the loss
the project's `vae_loss`, the optimiser AdamW without weight decay, gradients clipped at 1.
"""
import argparse
import ast
import dataclasses
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import webdataset as wds  # noqa: E402

from dataset.clip_sample import ClipSample  # noqa: E402
from dataset.loaders import vae_clip_batch  # noqa: E402
from dataset.shard_list import shard_urls  # noqa: E402
from model.anchors import farthest_point_sample, gather_points  # noqa: E402
from model.vae import VAE  # noqa: E402
from train import motion_diagnostics  # noqa: E402
from train.config import load_train_config  # noqa: E402
from train.objectives import VAELossConfig, vae_loss  # noqa: E402

FIGURES = ("l2_over_static", "l2_over_time_mean", "motion_spread", "latent_frame_spread", "view_swap")


class OracleVAE(VAE):
    """The VAE with the images replaced by each anchor's true frame-t position (`anchors_t`)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.oracle = torch.nn.Linear(cfg.width, cfg.width)

    def encode(self, p1, views, anchors=None, anchors_t=None):
        features = self.geometry_encoder(self.point_embedding(anchors), self.point_embedding(p1))
        features = features + self.oracle(self.point_embedding(anchors_t))
        for block in self.encoder_blocks:
            features = block(features)
        return self.to_mean(features), self.to_logvar(features).clamp(-30.0, 20.0)


def load_clips(data: str, split: str, loader, num_latents: int) -> list[dict]:
    """Every clip of a split as a whole-clip batch with its anchors and their true positions per frame."""
    urls = shard_urls([os.path.join(data, "manifest.json") + "#" + split])
    clips = []
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()):
        batch = vae_clip_batch(ClipSample(sample), loader)
        index = farthest_point_sample(batch["p1"][:1].float(), num_latents)       # (1, M)
        T = len(batch["p1"])
        batch["anchors"] = gather_points(batch["p1"][:1].float(), index).expand(T, -1, -1)
        batch["anchors_t"] = gather_points(batch["pt"].float(), index.expand(T, -1))
        clips.append(batch)
    return clips


@torch.no_grad()
def clip_figures(vae: VAE, clip: dict, oracle: bool) -> dict:
    if not oracle:
        return motion_diagnostics.vae_clip_scores(vae, clip)
    p1, anchors, true = clip["p1"], clip["anchors"], clip["pt"]
    mean, _ = vae.encode(p1, None, anchors, clip["anchors_t"])
    pred = vae.decode(mean, p1, anchors=anchors)
    swapped = vae.decode(vae.encode(p1, None, anchors, clip["anchors_t"].flip(0))[0], p1, anchors=anchors)
    return {**motion_diagnostics.scores(pred, true), **motion_diagnostics.collapse_scores(mean, pred, swapped, true)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a pipeline output (its manifest.json's train and test splits)")
    ap.add_argument("--config", default="vae-learn")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--vae", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-clips", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    cfg = load_train_config(args.config, "vae")
    vae_cfg = cfg.vae
    for item in args.vae:
        key, _, value = item.partition("=")
        vae_cfg = dataclasses.replace(vae_cfg, **{key: ast.literal_eval(value)})
    loader = dataclasses.replace(cfg.data, resample_points=False)
    started = time.perf_counter()
    train = load_clips(args.data, "train", loader, vae_cfg.num_latents)
    test = load_clips(args.data, "test", loader, vae_cfg.num_latents)
    print(f"{len(train)} training and {len(test)} held-out clips of {args.data} in memory "
          f"({time.perf_counter() - started:.0f} s); VAE {vae_cfg}", flush=True)

    vae = (OracleVAE if args.oracle else VAE)(vae_cfg)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    loss_cfg = VAELossConfig()
    rng = np.random.default_rng(args.seed)
    keys = ("p1", "pt", "views", "anchors", "anchors_t")
    print("| step | seconds | split | " + " | ".join(FIGURES) + " |\n|" + " --- |" * (3 + len(FIGURES)))
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        ramp = min(1.0, step / 100)
        for group in optimiser.param_groups:
            group["lr"] = args.lr * ramp * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        which = rng.integers(len(train), size=cfg.batch_size)
        frames = [int(rng.integers(len(train[c]["p1"]))) for c in which]
        batch = {k: torch.stack([train[c][k][t] for c, t in zip(which, frames)]) for k in keys}
        if args.oracle:
            mean, logvar = vae.encode(batch["p1"], None, batch["anchors"], batch["anchors_t"])
            z = vae.sample(mean, logvar)
            out = {"pred": vae.decode(z, batch["p1"], anchors=batch["anchors"]), "mean": mean, "logvar": logvar}
        else:
            out = vae(batch["p1"], batch["views"], anchors=batch["anchors"])
        loss = vae_loss(out, batch["pt"], loss_cfg)["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        if step % args.eval_every == 0 or step == args.steps:
            vae.eval()
            seconds = time.perf_counter() - started
            for split, clips in (("train", train), ("held-out", test)):
                figures = motion_diagnostics.mean_scores([clip_figures(vae, c, args.oracle)
                                                          for c in clips[:args.eval_clips]])
                print(f"| {step} | {seconds:.0f} | {split} | " + " | ".join(f"{figures[k]:.3f}" for k in FIGURES)
                      + " |", flush=True)
            vae.train()


if __name__ == "__main__":
    main()
