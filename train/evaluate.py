"""Evaluation on held-out clips, in the layout of the paper's Table 1.

For every test clip: the dense points of each keyframe (the subdivision map applied to `verts`), and
the same surface points predicted two ways: VAE reconstruction (encode P1 with the 4 views of frame
t, decode at frame 1's dense points) and, with a diffusion model, full generation from the clip's
monocular video (view 0 of every keyframe). Chamfer distance per frame on `eval_points` of the dense
points (fixed per clip) and the mean per-point L2. With a `render` function (the CLI passes the
renderer's replay, given the source assets), the clip's own vertices are decoded too, rendered with
the clip's cameras and light, and PSNR and SSIM over the 4 views (RGB on white) are computed against
the true frames. LPIPS needs network weights that are not available offline: the table says so
rather than print a number.
"""
from __future__ import annotations

import csv
import os
import zlib

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from dataset.clip_sample import ClipSample
from dataset.loaders import LoaderConfig, dense_map, vae_clip_batch
from dataset.view_tensors import matted_rgb
from model.anchors import anchor_points
from train.checkpoint import load_diffusion, load_vae
from train.metrics import chamfer_distance, per_point_l2, psnr, ssim

LPIPS_NOTE = "LPIPS: not measured (its network weights are not available offline)"
NO_RENDER_NOTE = "PSNR, SSIM: not measured (no source assets given: --assets)"


def on_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:].astype(np.float64) / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


def appearance(true_strips: list[np.ndarray], rendered_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Per frame PSNR and SSIM of the rendered 4-view strips against the true ones (RGB on white)."""
    from PIL import Image

    p, s = [], []
    for t, true in enumerate(true_strips):
        got = on_white(np.asarray(Image.open(os.path.join(rendered_dir, f"frame{t:02d}.png")).convert("RGBA")))
        p.append(psnr(got, true))
        s.append(ssim(got, true))
    return np.array(p), np.array(s)


@torch.no_grad()
def evaluate_clip(clip: ClipSample, vae, objective, data: LoaderConfig, eval_points: int, seed: int,
                  device, render=None, chunk: int = 65_536) -> dict:
    S = dense_map(clip)
    rng = np.random.default_rng([seed, zlib.crc32(clip.key.encode())])
    rows = S[rng.choice(S.shape[0], min(eval_points, S.shape[0]), replace=False)]
    true = torch.as_tensor(np.stack([rows @ v for v in clip.verts]), device=device)      # (T, P, 3)
    batch = vae_clip_batch(clip, data)
    queries = true[:1]
    p1 = batch["p1"].to(device)                                   # one P1, repeated for every keyframe
    anchors = anchor_points(p1[:1], vae.cfg.num_latents).expand(len(p1), -1, -1)
    mean, _ = vae.encode(p1, batch["views"].to(device), anchors)
    out = {"key": clip.key, "label": "textured" if clip.meta.get("textured") else "textureless",
           "frames": clip.num_frames}
    latents = {"reconstruction": mean}
    if objective is not None:
        video = torch.as_tensor(np.stack([matted_rgb(clip.frame(t)[data.video_view], objective.precond.net.cfg.image_size)
                                          for t in range(clip.num_frames)]), device=device)[None]
        gen = torch.Generator(device).manual_seed(seed)
        latents["generation"] = objective.sample(p1[:1], video, gen)[0]
    own = torch.as_tensor(clip.verts[:1], device=device)
    # the true 4-view strips on white, decoded once for every kind and the contact sheet
    true_strips = [on_white(np.concatenate(list(clip.frame(t)), axis=1)) for t in range(clip.num_frames)] \
        if render is not None else None
    for name, z in latents.items():
        pred = torch.cat([vae.decode(z[t:t + 1], queries, chunk) for t in range(clip.num_frames)])
        out[f"{name}_chamfer"] = chamfer_distance(pred, true).cpu().numpy()
        out[f"{name}_l2"] = per_point_l2(pred, true).cpu().numpy()
        out[f"{name}_points"] = pred.cpu().numpy()
        if render is not None:  # the clip's own vertices, rendered as the clip was
            verts = torch.cat([vae.decode(z[t:t + 1], own, chunk) for t in range(clip.num_frames)]).cpu().numpy()
            folder = render(clip, verts, name)
            out[f"{name}_renders"] = folder
            if folder is not None:
                out[f"{name}_psnr"], out[f"{name}_ssim"] = appearance(true_strips, folder)
    out["true_points"] = true.cpu().numpy()
    out["true_strips"] = [true_strips[t] for t in sorted({0, clip.num_frames // 2, clip.num_frames - 1})] \
        if render is not None else None
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


def frames_sheet(results: list[dict], path: str, clips: int = 4) -> str | None:
    """Rendered frames: per clip a row of the first, middle and last keyframe (4 views each), true
    then each kind's render, all on white."""
    from PIL import Image

    rows = []
    for r in results[:clips]:
        kinds = [k[:-8] for k in r if k.endswith("_renders") and r[k]]
        if not kinds or r.get("true_strips") is None:
            continue
        T = r["frames"]
        picks = sorted({0, T // 2, T - 1})
        strips = [np.concatenate(r["true_strips"], axis=0)]
        for k in kinds:
            strips.append(np.concatenate([on_white(np.asarray(Image.open(os.path.join(r[f"{k}_renders"],
                          f"frame{t:02d}.png")).convert("RGBA"))) for t in picks], axis=0))
        rows.append(np.concatenate(strips, axis=1))  # true | reconstruction | generation
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def evaluate(shards: list[str], vae_checkpoint: str, out_dir: str, diffusion_checkpoint: str | None = None,
             max_clips: int | None = None, eval_points: int = 10_000, seed: int = 0, device: str | None = None,
             render=None) -> dict:
    """`render(clip, verts (T, V, 3) normalised, kind) -> folder of frame<tt>.png or None` renders the
    clip's vertices as the clip was rendered (the CLI passes the renderer's replay)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    vae = load_vae(vae_checkpoint, device)
    objective, cfg = load_diffusion(diffusion_checkpoint, vae, device) if diffusion_checkpoint else (None, None)
    data = LoaderConfig(image_size=vae.cfg.image_size, resample_points=False, seed=seed,
                        num_points=cfg["data"]["num_points"] if cfg else LoaderConfig.num_points)
    results = []
    bar = tqdm(desc="evaluating clips", unit="clip", total=max_clips)
    for sample in wds.WebDataset(shards, shardshuffle=False):
        if max_clips is not None and len(results) == max_clips:
            break
        bar.update(1)
        results.append(evaluate_clip(ClipSample(sample), vae, objective, data, eval_points, seed, device, render))
    bar.close()
    if not results:
        raise ValueError(f"no clips in {shards}")
    os.makedirs(out_dir, exist_ok=True)
    kinds = ["reconstruction"] + (["generation"] if objective is not None else [])
    metrics = ["chamfer", "l2"] + (["psnr", "ssim"] if all(f"{k}_psnr" in r for r in results for k in kinds) else [])
    with open(os.path.join(out_dir, "per_clip.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "label", "frame"] + [f"{k}_{m}" for k in kinds for m in metrics])
        for r in results:
            for t in range(r["frames"]):
                w.writerow([r["key"], r["label"], t] + [f"{r[f'{k}_{m}'][t]:.6g}" for k in kinds for m in metrics])
    table = {k: {m: float(np.mean([r[f"{k}_{m}"].mean() for r in results])) for m in metrics} for k in kinds}
    names = {"reconstruction": "Ours, VAE reconstruction (4 views)", "generation": "Ours, generation (monocular video)"}
    lines = [f"Evaluated on {len(results)} clips; Chamfer on {eval_points:,} dense points per frame; "
             "PSNR and SSIM over the 4 views of every keyframe.", "",
             "| Method | PSNR | SSIM | LPIPS | Geo. CD | per-point L2 |", "| --- | --- | --- | --- | --- | --- |"]
    for k, v in table.items():
        app = f"{v['psnr']:.3f} | {v['ssim']:.4f}" if "psnr" in v else "- | -"
        lines.append(f"| {names[k]} | {app} | - | {v['chamfer']:.5f} | {v['l2']:.5f} |")
    lines += ["", LPIPS_NOTE + "." + ("" if "psnr" in metrics else " " + NO_RENDER_NOTE + ".")]
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sheet = contact_sheet(results, os.path.join(out_dir, "contact_sheet.png"))
    frames = frames_sheet(results, os.path.join(out_dir, "contact_sheet_frames.png"))
    return {"contact_sheet_frames": frames, "clips": len(results), "table": table,
            "table_path": os.path.join(out_dir, "table.md"),
            "csv": os.path.join(out_dir, "per_clip.csv"), "contact_sheet": sheet}
