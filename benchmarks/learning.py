"""Does the model learn the task? Renders (or reuses) the `learn` dataset (the procedural family),
trains the VAE and then the diffusion model within a time budget, and scores both on the held-out
clips (the test split) against the answers that need no learning (train/motion_diagnostics.py):

- VAE reconstruction: per-point L2 over frames 1..T-1 / time-mean control (aim <= 0.3) and / static
  control; the latents' spread over frames and the view swap;
- generation from the monocular video: L2 / time-mean control (aim <= 0.6) and frame following, the
  share of generated frames nearer their own truth than any other frame's of the clip (aim >= 0.8);
- video following: clip A's P1 driven by clip B's video. Shapes differ, so the motion is compared by
  its profile over time (each frame's mean displacement from frame 0): the share of (A, B) pairs whose
  driven profile correlates better with B's true profile than with A's (0.5 by chance; a model that
  ignored the video would follow A's own);
- learning curves (training loss, validation L2 over the controls) as OUT/learning_curves.png.

    python benchmarks/learning.py [--out runs/learn] [--budget-min 60] [--vae-share 0.6]
        [--vae-config vae-learn] [--diffusion-config diffusion-learn] [--set KEY=VALUE ...]
        [--max-test-clips 24] [--pairs 24] [--data PIPELINE_OUTPUT]

`--set` overrides the `learn` pipeline (e.g. `--set source.variants=40` for a quick check). The data
go to OUT/data (a resumable pipeline run: a second call reuses it), the models to OUT/vae and
OUT/diffusion, the figures to OUT/learning.json and OUT/learning.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import webdataset as wds  # noqa: E402

from dataset.clip_sample import ClipSample  # noqa: E402
from dataset.loaders import LoaderConfig, clip_video, vae_clip_batch  # noqa: E402
from train import motion_diagnostics  # noqa: E402
from train.config import load_train_config  # noqa: E402
from train.trainer import Trainer  # noqa: E402


def render_dataset(out: str, overrides: list[str], data: str | None = None) -> dict:
    """The `learn` pipeline into OUT/data (resumes what a previous call left), or the finished
    pipeline output `data` as it is (a machine without Blender); its shards by split."""
    start = time.perf_counter()
    if data is None:
        data = os.path.join(out, "data")
        cmd = [sys.executable, "-m", "driveanymesh", "run", "learn", "--out", data]
        for item in overrides:
            cmd += ["--set", item]
        print("rendering:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    with open(os.path.join(data, "manifest.json")) as f:
        manifest = json.load(f)
    shards = {split: [os.path.join(data, s["path"]) for s in manifest["shards"] if s["split"] == split]
              for split in ("train", "test")}
    counts = {split: sum(s["samples"] for s in manifest["shards"] if s["split"] == split) for split in shards}
    return {**shards, "counts": counts, "seconds": time.perf_counter() - start}


def train(name: str, kind: str, shards: dict, out: str, budget_s: float, vae_checkpoint: str | None = None):
    """Train configuration `name` for `budget_s` seconds, its cosine schedule spanning the steps that
    the budget allows at the rate of the first steps (the schedule reads cfg.max_steps at every step);
    the budget, not that estimate, ends the run."""
    from dataset.loaders import make_loader
    from train import checkpoint

    cfg = load_train_config(name, kind)
    start = time.perf_counter()
    trainer = Trainer(cfg, shards["train"], os.path.join(out, kind), val_shards=shards["test"],
                      vae_checkpoint=vae_checkpoint)
    trainer.prepare()
    # the rate of real steps (loader started, nothing validated), on the loader's first batches: fit
    # then skips them, as a resumed run does
    batches = iter(make_loader(trainer.shards, kind, cfg.data, cfg.batch_size, 0))
    trainer.train_step(next(batches))
    timed = time.perf_counter()
    for _ in range(5):
        trainer.train_step(next(batches))
    rate = 5 / (time.perf_counter() - timed)
    left = budget_s - (time.perf_counter() - start)
    cfg.max_steps = max(trainer.step + int(rate * left), 40)
    print(f"{kind}: {rate:.2f} steps/s: {cfg.max_steps} steps in {budget_s / 60:.1f} min", flush=True)
    # the time ends the run, not the estimate (a rate measured on a busy machine is low): past
    # cfg.max_steps the rate stays at the schedule's floor
    trainer.fit(max_steps=10**9, time_budget_s=max(budget_s - (time.perf_counter() - start), 1.0))
    trainer.close()
    return checkpoint.latest(os.path.join(out, kind)), trainer


def test_clips(shards: dict, limit: int) -> list[ClipSample]:
    clips = [ClipSample(s) for s in wds.WebDataset(shards["test"], shardshuffle=False)]
    return clips[:limit]


def motion_profile(points: torch.Tensor) -> np.ndarray:
    """(T, N, 3) -> (T,) each frame's mean displacement from frame 0."""
    return torch.linalg.vector_norm(points - points[:1], dim=-1).mean(-1).cpu().numpy()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


@torch.no_grad()
def score(vae_path: str, diffusion_path: str, clips: list[ClipSample], pairs: int) -> dict:
    from train.checkpoint import load_diffusion, load_vae

    vae = load_vae(vae_path, "cpu")
    objective, cfg = load_diffusion(diffusion_path, vae, "cpu")
    data = LoaderConfig(image_size=vae.cfg.image_size, num_points=cfg["data"]["num_points"], resample_points=False,
                        video_view=cfg["data"]["video_view"])
    size = objective.precond.net.cfg.image_size
    recon, gen, generated, truths, videos, p1s = [], [], [], [], [], []
    for i, clip in enumerate(clips):
        batch = vae_clip_batch(clip, data)
        recon.append(motion_diagnostics.vae_clip_scores(vae, batch))
        video = torch.as_tensor(clip_video(clip, data.video_view, size))[None]
        p1 = batch["p1"][:1]
        anchors = objective.anchors(p1)
        z = objective.sample(p1, video, torch.Generator().manual_seed(i), anchors)[0]
        pred = vae.decode(z, p1.expand(len(z), -1, -1), anchors=anchors.expand(len(z), -1, -1))
        gen.append(motion_diagnostics.scores(pred, batch["pt"]))
        generated.append(pred)
        truths.append(batch["pt"])
        videos.append(video)
        p1s.append(p1)
    # video following: A's P1 with B's video, B the next clip (in turn) with as many frames
    toward, tried = 0, 0
    for a in range(min(pairs, len(clips))):
        b = (a + 1 + a // len(clips)) % len(clips)
        if b == a or videos[a].shape[1] != videos[b].shape[1]:
            continue
        anchors = objective.anchors(p1s[a])
        z = objective.sample(p1s[a], videos[b], torch.Generator().manual_seed(1000 + a), anchors)[0]
        driven = motion_profile(vae.decode(z, p1s[a].expand(len(z), -1, -1), anchors=anchors.expand(len(z), -1, -1)))
        toward += correlation(driven, motion_profile(truths[b])) > correlation(driven, motion_profile(truths[a]))
        tried += 1
    mean = motion_diagnostics.mean_scores
    return {"clips": len(clips), "reconstruction": mean(recon), "generation": mean(gen),
            "video_following": toward / max(tried, 1), "video_following_pairs": tried}


def curves(runs: dict, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 * len(runs), figsize=(6 * len(runs), 3.2), squeeze=False)
    for k, (kind, trainer) in enumerate(runs.items()):
        ax = axes[0][2 * k]
        steps = [r["step"] for r in trainer.history]
        ax.plot(steps, [r["loss"] for r in trainer.history], lw=0.6)
        ax.set_yscale("log")
        ax.set_title(f"{kind}: training loss", fontsize=9)
        ax.set_xlabel("step")
        ax = axes[0][2 * k + 1]
        for name in ("clip_l2_over_time_mean", "clip_l2_over_static"):
            pts = [(v["step"], v[name]) for v in trainer.validations if name in v]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=name[8:].replace("_", " "))
        ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_title(f"{kind}: held-out L2 / control", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(result: dict) -> str:
    r, g = result["reconstruction"], result["generation"]
    rows = [("VAE reconstruction: L2 / time-mean control", r["l2_over_time_mean"], "<= 0.3"),
            ("VAE reconstruction: L2 / static control", r["l2_over_static"], ""),
            ("VAE reconstruction: latent frame spread", r["latent_frame_spread"], ""),
            ("VAE reconstruction: view swap (L2 ratio)", r["view_swap"], "> 1"),
            ("generation: L2 / time-mean control", g["l2_over_time_mean"], "<= 0.6"),
            ("generation: L2 / static control", g["l2_over_static"], ""),
            ("generation: motion spread / true", g["motion_spread"], ""),
            ("generation: frame following", g["frame_following"], ">= 0.8"),
            (f"video following ({result['video_following_pairs']} pairs)", result["video_following"], "> 0.5")]
    lines = [f"Held-out clips: {result['clips']}.", "", "| figure | value | aim |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value:.3f} | {aim} |" for name, value, aim in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "learn"))
    ap.add_argument("--budget-min", type=float, default=60.0, help="training minutes, both models")
    ap.add_argument("--vae-share", type=float, default=0.6, help="share of the budget for the VAE")
    ap.add_argument("--vae-config", default="vae-learn")
    ap.add_argument("--diffusion-config", default="diffusion-learn")
    ap.add_argument("--set", action="append", default=[], help="override of the learn pipeline")
    ap.add_argument("--data", help="a finished pipeline output to train on instead of rendering OUT/data")
    ap.add_argument("--max-test-clips", type=int, default=24)
    ap.add_argument("--pairs", type=int, default=24)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"learning benchmark: outputs in {args.out}", flush=True)
    shards = render_dataset(args.out, args.set, args.data)
    print(f"data: {shards['counts']} clips (train, test) in {shards['seconds']:.0f} s", flush=True)
    budget = args.budget_min * 60
    vae_path, vae_trainer = train(args.vae_config, "vae", shards, args.out, budget * args.vae_share)
    diffusion_path, diffusion_trainer = train(args.diffusion_config, "diffusion", shards, args.out,
                                              budget * (1 - args.vae_share), vae_checkpoint=vae_path)
    plot = curves({"vae": vae_trainer, "diffusion": diffusion_trainer}, os.path.join(args.out, "learning_curves.png"))
    start = time.perf_counter()
    result = score(vae_path, diffusion_path, test_clips(shards, args.max_test_clips), args.pairs)
    result.update(data=shards["counts"], vae_steps=vae_trainer.step, diffusion_steps=diffusion_trainer.step,
                  budget_min=args.budget_min, score_seconds=time.perf_counter() - start)
    with open(os.path.join(args.out, "learning.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = table(result) + (f"\nTraining: VAE {vae_trainer.step} steps, diffusion {diffusion_trainer.step} steps in "
                            f"{args.budget_min:g} min; data {shards['counts']}.\n")
    with open(os.path.join(args.out, "learning.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"curves: {plot}\nfigures: {os.path.join(args.out, 'learning.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
