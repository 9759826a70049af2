"""Evaluation on held-out clips, in the layout of the paper's Table 1.

For every test clip: the dense points of each keyframe (the subdivision map applied to `verts`), and
the same surface points predicted two ways: VAE reconstruction (encode P1 with the 4 views of frame
t, decode at frame 1's dense points) and, with a diffusion model, full generation from the clip's
monocular video (view 0 of every keyframe). Chamfer distance per frame on `eval_points` of the dense
points (fixed per clip) and the mean per-point L2. Appearance metrics (PSNR, SSIM, LPIPS over the 4
views) need the driven mesh rendered with the clip's cameras and light: not part of this command yet,
and the table says so rather than print a number.
"""
from __future__ import annotations

import csv
import os
import zlib

import numpy as np
import torch
import webdataset as wds

from dataset.clip_sample import ClipSample
from dataset.loaders import LoaderConfig, dense_map, vae_clip_batch
from dataset.view_tensors import matted_rgb
from train.drive import load_diffusion
from train.metrics import chamfer_distance, per_point_l2
from train.objectives import generate_latents
from train.trainer import load_vae

APPEARANCE_NOTE = "not measured: rendering the driven mesh for PSNR/SSIM is not built yet; no offline LPIPS weights"


@torch.no_grad()
def evaluate_clip(clip: ClipSample, vae, objective, data: LoaderConfig, eval_points: int, seed: int,
                  device, chunk: int = 65_536) -> dict:
    S = dense_map(clip)
    rng = np.random.default_rng([seed, zlib.crc32(clip.key.encode())])
    rows = S[rng.choice(S.shape[0], min(eval_points, S.shape[0]), replace=False)]
    true = torch.as_tensor(np.stack([rows @ v for v in clip.verts]), device=device)      # (T, P, 3)
    batch = vae_clip_batch(clip, data)
    queries = true[:1]
    mean, _ = vae.encode(batch["p1"].to(device), batch["views"].to(device))
    out = {"key": clip.key, "label": "textured" if clip.meta.get("textured") else "textureless",
           "frames": clip.num_frames}
    preds = {"reconstruction": torch.cat([vae.decode(mean[t:t + 1], queries, chunk) for t in range(clip.num_frames)])}
    if objective is not None:
        video = torch.as_tensor(np.stack([matted_rgb(clip.frame(t)[data.video_view], objective.precond.net.cfg.image_size)
                                          for t in range(clip.num_frames)]), device=device)[None]
        gen = torch.Generator(device).manual_seed(seed)
        z = generate_latents(objective.precond, objective, batch["p1"][:1].to(device), video,
                             vae.cfg.num_latents, objective.edm, gen)[0]
        preds["generation"] = torch.cat([vae.decode(z[t:t + 1], queries, chunk) for t in range(clip.num_frames)])
    for name, pred in preds.items():
        out[f"{name}_chamfer"] = chamfer_distance(pred, true).cpu().numpy()
        out[f"{name}_l2"] = per_point_l2(pred, true).cpu().numpy()
        out[f"{name}_points"] = pred.cpu().numpy()
    out["true_points"] = true.cpu().numpy()
    out["cameras"] = clip.cameras
    return out


def contact_sheet(results: list[dict], path: str, clips: int = 4) -> str:
    """True (grey) and predicted (colour) points of the first, middle and last keyframe, seen through
    view 0's camera, one row per clip."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = results[:clips]
    kinds = [k[:-7] for k in shown[0] if k.endswith("_points") and k != "true_points"]
    fig, axes = plt.subplots(len(shown), 3, figsize=(9, 3 * len(shown)), squeeze=False)
    for row, r in zip(axes, shown):
        view = r["cameras"]["views"][0]
        K, w2c = np.array(view["K"]), np.array(view["w2c"])
        T = r["frames"]
        for ax, t in zip(row, sorted({0, T // 2, T - 1})):
            for pts, colour, label in [(r["true_points"][t], "0.6", "true")] + [
                    (r[f"{k}_points"][t], c, k) for k, c in zip(kinds, ("tab:blue", "tab:red"))]:
                cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
                uv = cam @ K.T
                ax.scatter(uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2], s=0.3, c=colour, label=label)
            ax.set_xlim(0, r["cameras"]["width"])
            ax.set_ylim(r["cameras"]["height"], 0)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{r['key']} t={t}", fontsize=8)
    axes[0][0].legend(fontsize=6, markerscale=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(shards: list[str], vae_checkpoint: str, out_dir: str, diffusion_checkpoint: str | None = None,
             max_clips: int | None = None, eval_points: int = 10_000, seed: int = 0, device: str | None = None) -> dict:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vae = load_vae(vae_checkpoint, device)
    objective, cfg = load_diffusion(diffusion_checkpoint, vae, device) if diffusion_checkpoint else (None, None)
    data = LoaderConfig(image_size=vae.cfg.image_size, resample_points=False, seed=seed,
                        num_points=cfg["data"]["num_points"] if cfg else LoaderConfig.num_points)
    results = []
    for sample in wds.WebDataset(shards, shardshuffle=False):
        if max_clips is not None and len(results) == max_clips:
            break
        results.append(evaluate_clip(ClipSample(sample), vae, objective, data, eval_points, seed, device))
    if not results:
        raise ValueError(f"no clips in {shards}")
    os.makedirs(out_dir, exist_ok=True)
    kinds = ["reconstruction"] + (["generation"] if objective is not None else [])
    with open(os.path.join(out_dir, "per_clip.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "label", "frame"] + [f"{k}_{m}" for k in kinds for m in ("chamfer", "l2")])
        for r in results:
            for t in range(r["frames"]):
                w.writerow([r["key"], r["label"], t] + [f"{r[f'{k}_{m}'][t]:.6g}" for k in kinds
                                                         for m in ("chamfer", "l2")])
    table = {k: {"chamfer": float(np.mean([r[f"{k}_chamfer"].mean() for r in results])),
                 "l2": float(np.mean([r[f"{k}_l2"].mean() for r in results]))} for k in kinds}
    names = {"reconstruction": "Ours, VAE reconstruction (4 views)", "generation": "Ours, generation (monocular video)"}
    lines = [f"Evaluated on {len(results)} clips; Chamfer on {eval_points:,} dense points per frame.", "",
             "| Method | PSNR | SSIM | LPIPS | Geo. CD | per-point L2 |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {names[k]} | - | - | - | {v['chamfer']:.5f} | {v['l2']:.5f} |" for k, v in table.items()]
    lines += ["", f"PSNR, SSIM, LPIPS: {APPEARANCE_NOTE}."]
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sheet = contact_sheet(results, os.path.join(out_dir, "contact_sheet.png"))
    return {"clips": len(results), "table": table, "table_path": os.path.join(out_dir, "table.md"),
            "csv": os.path.join(out_dir, "per_clip.csv"), "contact_sheet": sheet}
