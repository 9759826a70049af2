"""Evaluation on held-out clips, in the layout of the paper's Table 1, with ActionBench's metrics beside.

For every test clip: the dense points of each keyframe (the subdivision map applied to `verts`), and
the same surface points predicted two ways: VAE reconstruction (encode P1 with the 4 views of frame
t, decode at frame 1's dense points) and, with a diffusion model, full generation from the clip's
monocular video (view 0 of every keyframe); and two controls that need no learning, which any model
that learnt motion must beat: the first frame held still, and each point at its mean position over
the clip (what a VAE collapsed onto its time-mean pose scores, however low its loss). Per model, the
figures that tell a frame-blind answer from a following one (train/motion_diagnostics.py): L2 over
each control's, the decoded motion's spread over frames, frame following, and for the VAE the
latents' spread over frames and the view swap (frame t decoded from the views of frame T-1-t). Chamfer distance per frame on `eval_points` of the dense points
(fixed per clip) and the mean per-point L2. ActionBench's CD-3D, CD-4D and CD-M (train/actionbench.py)
on up to `actionbench_points` dense points, which are tracked points as ActionBench's ground truth is;
the prediction is decoded at the same points, so it is tracked too (CD-M needs no resampling). Both
point sets are the first points of one permutation of the clip's dense points (the smaller inside
the larger), so the VAE decodes each frame once for both; the ground truth's KD-trees are built once
per clip and shared by every kind (Chamfer on the CPU through KD-trees, train/metrics.py).

With a `render` function (the CLI passes the renderer's replay, given the source assets), the clip's
own vertices are decoded too, rendered with the clip's cameras and light, and PSNR and SSIM over the
4 views (RGB on white) are computed against the true frames, and LPIPS when its weights are present
(train/lpips_metric.py); otherwise the table says what is missing.

Resumable per clip: each finished clip is kept as `clips/<key>.json` (atomic) and appended to
`per_clip.csv` (one row per clip and frame) and `actionbench.csv` (one row per clip and kind); a
restarted evaluation with the same settings skips the clips it has, rebuilding both files from the
kept clips first, so a kill mid-line loses nothing.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds
from scipy.spatial import cKDTree
from tqdm import tqdm

from dataset.clip_sample import ClipSample
from dataset.loaders import LoaderConfig, clip_video, dense_map, vae_clip_batch
from dataset.storage import atomic_write
from model.anchors import anchor_points
from train import actionbench, lpips_metric, motion_diagnostics
from train.checkpoint import load_diffusion, load_vae
from train.metrics import chamfer_distance, kd_trees, per_point_l2, psnr, ssim

NO_RENDER_NOTE = "PSNR, SSIM, LPIPS: not measured (no source assets given: --assets)"
NAMES = {"reconstruction": "Ours, VAE reconstruction (4 views)", "generation": "Ours, generation (monocular video)",
         "frozen": "Control: first frame held still", "time_mean": "Control: each point at its mean over the clip"}
CONTROLS = ("frozen", "time_mean")  # answers that need no learning: every table shows them


@dataclass(frozen=True)
class Metric:
    """One figure of the evaluation: where a clip's result keeps it (`group`), how the table shows it,
    and which kinds have it. The registry below drives the per-frame columns, the summary and the tables."""
    name: str
    heading: str
    spec: str                 # format of the table's cell
    group: str                # "frame": per frame (clip mean, then the mean over clips); "actionbench": per
    #                           clip and kind; "following" / "collapse": per clip, models only (the VAE for collapse)
    needs: str = ""           # "render": only with renders; "lpips": only with LPIPS's weights too
    controls: bool = True     # whether the controls are scored on it


METRICS = (
    Metric("psnr", "PSNR", ".3f", "frame", needs="render", controls=False),
    Metric("ssim", "SSIM", ".4f", "frame", needs="render", controls=False),
    Metric("lpips", "LPIPS", ".4f", "frame", needs="lpips", controls=False),
    Metric("chamfer", "Geo. CD", ".6f", "frame"),
    Metric("l2", "per-point L2", ".6f", "frame"),
    Metric("cd_3d", "CD-3D", ".4f", "actionbench"),
    Metric("cd_4d", "CD-4D", ".4f", "actionbench"),
    Metric("cd_m", "CD-M", ".4f", "actionbench"),
    Metric("l2_over_static", "L2 / static", ".3f", "following", controls=False),
    Metric("l2_over_time_mean", "L2 / time-mean", ".3f", "following", controls=False),
    Metric("motion_spread", "motion spread", ".3f", "following", controls=False),
    Metric("frame_following", "frame following", ".3f", "following", controls=False),
    Metric("latent_frame_spread", "latent frame spread", ".3f", "collapse", controls=False),
    Metric("view_swap", "view swap", ".3f", "collapse", controls=False),
)


def metrics(*groups: str) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.group in groups)


FOLLOWING = tuple(m.name for m in metrics("following"))
COLLAPSE = tuple(m.name for m in metrics("collapse"))
AB_METRICS = tuple(m.name for m in metrics("actionbench"))
SHEET_CLIPS = 4  # clips shown in the contact sheets: their points and frames are kept


def on_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:].astype(np.float64) / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


def appearance(true_strips: list[np.ndarray], rendered_dir: str, lpips=None) -> dict[str, np.ndarray]:
    """Per frame PSNR, SSIM (and LPIPS) of the rendered 4-view strips against the true ones, on white."""
    from PIL import Image

    out = {"psnr": [], "ssim": []} | ({"lpips": []} if lpips is not None else {})
    for t, true in enumerate(true_strips):
        got = on_white(np.asarray(Image.open(os.path.join(rendered_dir, f"frame{t:02d}.png")).convert("RGBA")))
        out["psnr"].append(psnr(got, true))
        out["ssim"].append(ssim(got, true))
        if lpips is not None:
            out["lpips"].append(lpips_metric.lpips_of_strips(lpips, got, true))
    return {k: np.array(v) for k, v in out.items()}


@torch.no_grad()
def evaluate_clip(clip: ClipSample, vae, objective, data: LoaderConfig, eval_points: int, seed: int,
                  device, render=None, chunk: int = 65_536, actionbench_points: int = 100_000,
                  actionbench_settings: dict | None = None, lpips=None) -> dict:
    S = dense_map(clip)
    # one permutation of the dense points: Chamfer's are its first eval_points, ActionBench's its first
    # actionbench_points, so the smaller set is part of the larger and the VAE decodes once for both
    order = np.random.default_rng([seed, zlib.crc32(clip.key.encode())]).permutation(S.shape[0])
    n_eval, n_ab = min(eval_points, S.shape[0]), min(actionbench_points, S.shape[0])
    rows = S[order[:max(n_eval, n_ab)]]
    true_all = np.stack([rows @ v for v in clip.verts]).astype(np.float32)                     # (T, P', 3)
    true = torch.as_tensor(true_all[:, :n_eval], device=device)                                # (T, P, 3)
    true_ab = true_all[:, :n_ab]                                                               # (T, Q, 3)
    batch = vae_clip_batch(clip, data)
    p1 = batch["p1"].to(device)                                   # one P1, repeated for every keyframe
    anchors = anchor_points(p1[:1], vae.cfg.num_latents).expand(len(p1), -1, -1)
    views = batch["views"].to(device)
    mean, _ = vae.encode(p1, views, anchors)
    T = clip.num_frames
    out = {"key": clip.key, "label": "textured" if clip.meta.get("textured") else "textureless", "frames": T,
           "metrics": {}, "actionbench": {}, "points": {}, "renders": {}, "following": {}}
    latents = {"reconstruction": mean}
    if objective is not None:
        video = torch.as_tensor(clip_video(clip, data.video_view, objective.precond.net.cfg.image_size),
                                device=device)[None]
        latents["generation"] = objective.sample(p1[:1], video, torch.Generator(device).manual_seed(seed))[0]
    own = torch.as_tensor(clip.verts[:1], device=device)
    queries, queries_all = true[:1], torch.as_tensor(true_all[:1], device=device)
    # the true 4-view strips on white, decoded once for every kind and the contact sheet
    true_strips = [on_white(np.concatenate(list(clip.frame(t)), axis=1)) for t in range(T)] \
        if render is not None else None

    def decode(z, at):
        return torch.cat([vae.decode(z[t:t + 1], at, chunk, anchors=anchors[:1]) for t in range(T)])

    predictions = {}
    for name, z in latents.items():
        pred = decode(z, queries_all)
        predictions[name] = (pred[:, :n_eval], pred[:, :n_ab].cpu().numpy())
    # the controls: the rest pose held still, and each point at its mean position over the clip
    predictions["frozen"] = (true[:1].expand_as(true), np.repeat(true_ab[:1], T, axis=0))
    predictions["time_mean"] = (true.mean(0, keepdim=True).expand_as(true),
                                np.repeat(true_ab.mean(0, keepdims=True), T, axis=0))
    for name in latents:
        out["following"][name] = {k: v for k, v in motion_diagnostics.scores(predictions[name][0], true).items()
                                  if k in FOLLOWING}
    swapped = decode(vae.encode(p1, views.flip(0), anchors)[0], queries)  # frame t from frame T-1-t's views
    out["following"]["reconstruction"].update(
        motion_diagnostics.collapse_scores(mean, predictions["reconstruction"][0], swapped, true))
    # the ground truth's KD-trees, built once for every kind (CPU; a GPU takes Chamfer's by torch.cdist)
    true_trees = kd_trees(true) if true.device.type == "cpu" else None
    ab_trees = [cKDTree(frame) for frame in np.asarray(true_ab, np.float64)]
    for name, (pred, pred_ab) in predictions.items():
        out["metrics"][name] = {"chamfer": chamfer_distance(pred, true, b_trees=true_trees).cpu().numpy(),
                                "l2": per_point_l2(pred, true).cpu().numpy()}
        out["actionbench"][name] = actionbench.score_sequences(true_ab, pred_ab, gt_trees=ab_trees,
                                                               **(actionbench_settings or {}))
        out["points"][name] = pred.cpu().numpy()
        if render is not None and name in latents:  # the clip's own vertices, rendered as the clip was
            folder = render(clip, decode(latents[name], own).cpu().numpy(), name)
            out["renders"][name] = folder
            if folder is not None:
                out["metrics"][name].update(appearance(true_strips, folder, lpips))
    out["true_points"] = true.cpu().numpy()
    out["true_strips"] = [true_strips[t] for t in sorted({0, T // 2, T - 1})] if render is not None else None
    out["cameras"] = clip.cameras
    return out


# -- the contact sheets -----------------------------------------------------------------------------

def contact_sheet(results: list[dict], path: str) -> str:
    """True (grey) and predicted (colour) points of the first, middle and last keyframe, seen through
    view 0's camera, one row per clip."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = results[:SHEET_CLIPS]
    kinds = [k for k in shown[0]["points"] if k not in CONTROLS]
    fig, axes = plt.subplots(len(shown), 3, figsize=(9, 3 * len(shown)), squeeze=False)
    for row, r in zip(axes, shown):
        view = r["cameras"]["views"][0]
        K, w2c = np.array(view["K"]), np.array(view["w2c"])
        T = r["frames"]
        for ax, t in zip(row, sorted({0, T // 2, T - 1})):
            for pts, colour, label in [(r["true_points"][t], "0.6", "true")] + [
                    (r["points"][k][t], c, k) for k, c in zip(kinds, ("tab:blue", "tab:red"))]:
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


def object_box(strips: list[np.ndarray], views: int, margin: int = 4) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of one view panel holding every non-white pixel of every view of
    the given strips (H x views*W x 3), with a margin; None when all is white."""
    panels = np.concatenate([np.stack(np.split(s, views, axis=1)) for s in strips])   # (n, H, W, 3)
    ink = (panels < 250).any(axis=(0, 3))                                               # (H, W)
    if not ink.any():
        return None
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    h, w = ink.shape
    return (max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, h),
            max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, w))


def crop_views(strip: np.ndarray, views: int, box) -> np.ndarray:
    """Each view panel of a strip cut to the box, side by side again."""
    top, bottom, left, right = box
    return np.concatenate([p[top:bottom, left:right] for p in np.split(strip, views, axis=1)], axis=1)


def frames_sheet(results: list[dict], path: str) -> str | None:
    """Rendered frames: per clip a row of the first, middle and last keyframe (4 views each, each view
    cropped to the object's box over all the row's images), true then each kind's render, on white."""
    from PIL import Image

    rows = []
    for r in results[:SHEET_CLIPS]:
        kinds = [k for k, folder in r["renders"].items() if folder]
        if not kinds or r.get("true_strips") is None:
            continue
        T = r["frames"]
        views = len(r["cameras"]["views"])
        picks = sorted({0, T // 2, T - 1})
        columns = [r["true_strips"]] + [[on_white(np.asarray(Image.open(os.path.join(r["renders"][k],
                   f"frame{t:02d}.png")).convert("RGBA"))) for t in picks] for k in kinds]
        box = object_box([s for column in columns for s in column], views)
        if box is not None:
            columns = [[crop_views(s, views, box) for s in column] for column in columns]
        rows.append(np.concatenate([np.concatenate(column, axis=0) for column in columns], axis=1))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


# -- what a finished clip leaves, and resuming ------------------------------------------------------

def _keep_clip(out_dir: str, index: int, r: dict) -> None:
    """clips/<key>.json: every figure of the clip; the sheet clips also keep their points (.npz)."""
    os.makedirs(os.path.join(out_dir, "clips"), exist_ok=True)
    kept = {"index": index, "key": r["key"], "label": r["label"], "frames": r["frames"],
            "metrics": {k: {m: v.tolist() for m, v in ms.items()} for k, ms in r["metrics"].items()},
            "actionbench": r["actionbench"], "renders": r["renders"], "following": r["following"]}
    if index < SHEET_CLIPS:
        buf = io.BytesIO()
        np.savez(buf, true_points=r["true_points"], cameras=json.dumps(r["cameras"]),
                 true_strips=np.stack(r["true_strips"]) if r["true_strips"] is not None else np.zeros(0),
                 **{f"points_{k}": v for k, v in r["points"].items()})
        atomic_write(os.path.join(out_dir, "clips", f"{r['key']}.npz"), buf.getvalue())
    atomic_write(os.path.join(out_dir, "clips", f"{r['key']}.json"), json.dumps(kept).encode())


def _kept_clips(out_dir: str) -> list[dict]:
    folder = os.path.join(out_dir, "clips")
    if not os.path.isdir(folder):
        return []
    kept = []
    for name in os.listdir(folder):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                r = json.load(f)
            r["metrics"] = {k: {m: np.array(v, dtype=float) for m, v in ms.items()} for k, ms in r["metrics"].items()}
            kept.append(r)
    return sorted(kept, key=lambda r: r["index"])


def _with_sheet_data(out_dir: str, r: dict) -> dict:
    path = os.path.join(out_dir, "clips", f"{r['key']}.npz")
    if "points" in r or not os.path.exists(path):
        return r
    z = np.load(path)
    return {**r, "true_points": z["true_points"], "cameras": json.loads(str(z["cameras"])),
            "true_strips": list(z["true_strips"]) if z["true_strips"].size else None,
            "points": {k[7:]: z[k] for k in z.files if k.startswith("points_")}}


class ClipTables:
    """per_clip.csv (clip x frame) and actionbench.csv (clip x kind), appended one clip at a time."""

    def __init__(self, out_dir: str, columns: list[tuple[str, str]]):
        self.columns = columns
        self.per_frame = os.path.join(out_dir, "per_clip.csv")
        self.actionbench = os.path.join(out_dir, "actionbench.csv")

    def rewrite(self, kept: list[dict]) -> None:
        """Both files from the kept clips (a restart: whatever a kill left half written goes)."""
        for path, header in ((self.per_frame, self._frame_header()), (self.actionbench, self._ab_header())):
            buf = io.StringIO()
            csv.writer(buf).writerow(header)
            atomic_write(path, buf.getvalue().encode())
        for r in kept:
            self.append(r)

    def _frame_header(self):
        return ["key", "label", "frame"] + [f"{k}_{m}" for k, m in self.columns]

    def _ab_header(self):
        return ["key", "label", "kind", *AB_METRICS]

    def append(self, r: dict) -> None:
        def cell(k, m, t):
            v = r["metrics"].get(k, {}).get(m)
            return "" if v is None else f"{v[t]:.6g}"

        with open(self.per_frame, "a", newline="") as f:
            w = csv.writer(f)
            for t in range(r["frames"]):
                w.writerow([r["key"], r["label"], t] + [cell(k, m, t) for k, m in self.columns])
        with open(self.actionbench, "a", newline="") as f:
            w = csv.writer(f)
            for kind, scores in r["actionbench"].items():
                w.writerow([r["key"], r["label"], kind] + [f"{scores[m]:.6g}" for m in AB_METRICS])


def summarise(results: list[dict], kinds: list[str]) -> dict[str, dict[str, float | None]]:
    """Per kind, each metric's mean over clips of the clip's frame mean (every clip counts once, as
    grouping per_clip.csv by key gives), and ActionBench's metrics' mean over clips."""
    def mean(k, m):
        values = [r["metrics"][k][m].mean() for r in results if m in r["metrics"].get(k, {})]
        return float(np.mean(values)) if values else None

    def following(k, m):
        values = [r["following"][k][m] for r in results if m in r.get("following", {}).get(k, {})]
        return float(np.mean(values)) if values else None

    return {k: {**{m.name: mean(k, m.name) for m in metrics("frame")},
                **{m: float(np.mean([r["actionbench"][k][m] for r in results])) for m in AB_METRICS},
                **{m: following(k, m) for m in FOLLOWING + COLLAPSE}}
            for k in kinds}


def table_markdown(summary: dict, clips: int, notes: list[str], eval_points: int) -> str:
    def header(ms):
        return ["| Method | " + " | ".join(m.heading for m in ms) + " |", "| --- " * (len(ms) + 1) + "|"]

    def row(kind, values, ms):
        return f"| {NAMES[kind]} | " + " | ".join("-" if values.get(m.name) is None else
                                                 format(values[m.name], m.spec) for m in ms) + " |"

    lines = [f"Evaluated on {clips} clips; Chamfer on {eval_points:,} dense points per frame; PSNR, SSIM and "
             "LPIPS over the 4 views of every keyframe; CD-3D, CD-4D and CD-M as ActionBench defines them "
             "(train/actionbench.py).", "",
             *header(metrics("frame", "actionbench"))]
    for k, v in summary.items():
        lines.append(row(k, v, metrics("frame", "actionbench")))
    lines += ["", "Against the answers that need no learning, per clip over frames 1..T-1 "
              "(train/motion_diagnostics.py): L2 over the still first frame's and over the time-mean's (under "
              "1: better than that control), the decoded motion's spread over frames over the true one's, the "
              "share of frames nearer their own truth than any other frame's (1/T by chance); for the "
              "reconstruction, the latents' spread over frames over their whole spread, and L2 with every "
              "frame's views swapped for another frame's over L2 with its own (1: the images are not used).", "",
              *header(metrics("following", "collapse"))]
    for k, v in summary.items():
        if k in CONTROLS:
            continue
        lines.append(row(k, v, metrics("following", "collapse")))
    lines += [""] + [n + "." for n in notes]
    return "\n".join(lines) + "\n"


class ClipEvaluator:
    """What one clip's evaluation needs, loaded once (the models, the loader settings, LPIPS), called
    with a shard sample. `evaluate` runs one in its own process, or one per Ray actor."""

    def __init__(self, vae_checkpoint: str, diffusion_checkpoint: str | None, eval_points: int, seed: int,
                 device: str | None, render, actionbench_points: int, actionbench_settings: dict | None,
                 lpips_backbone: str | None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.vae = load_vae(vae_checkpoint, self.device)
        self.objective, cfg = load_diffusion(diffusion_checkpoint, self.vae, self.device) \
            if diffusion_checkpoint else (None, None)
        self.data = LoaderConfig(image_size=self.vae.cfg.image_size, resample_points=False, seed=seed,
                                 num_points=cfg["data"]["num_points"] if cfg else LoaderConfig.num_points)
        self.render = render
        self.lpips = lpips_metric.load(lpips_backbone) if render is not None else None
        self.kw = dict(eval_points=eval_points, seed=seed, actionbench_points=actionbench_points,
                       actionbench_settings=actionbench_settings)

    def evaluate_sample(self, sample: dict) -> dict:
        kw = self.kw
        return evaluate_clip(ClipSample(sample), self.vae, self.objective, self.data, kw["eval_points"], kw["seed"],
                             self.device, self.render, actionbench_points=kw["actionbench_points"],
                             actionbench_settings=kw["actionbench_settings"], lpips=self.lpips)


def _on_ray(todo, evaluator_args: tuple, ray_address: str, workers: int):
    """(index, result) of every (index, sample) in `todo`, as Ray actors finish them (one
    ClipEvaluator per actor, a CPU each; at most two clips in flight per actor)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False)
    actors_n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    print(f"evaluating on Ray ({ray_address}): {actors_n} workers", flush=True)
    remote = ray.remote(num_cpus=1)(ClipEvaluator)
    actors = [remote.remote(*evaluator_args) for _ in range(actors_n)]
    in_flight, turn = {}, 0
    todo = iter(todo)
    while True:
        while len(in_flight) < 2 * len(actors):
            nxt = next(todo, None)
            if nxt is None:
                break
            index, sample = nxt
            in_flight[actors[turn % len(actors)].evaluate_sample.remote(sample)] = index
            turn += 1
        if not in_flight:
            return
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        yield in_flight.pop(ready[0]), ray.get(ready[0])


def evaluate(shards: list[str], vae_checkpoint: str, out_dir: str, diffusion_checkpoint: str | None = None,
             max_clips: int | None = None, eval_points: int = 10_000, seed: int = 0, device: str | None = None,
             render=None, actionbench_points: int = 100_000, actionbench_settings: dict | None = None,
             lpips_backbone: str | None = None, ray_address: str | None = None, workers: int = 0,
             total_clips: int | None = None) -> dict:
    """`render(clip, verts (T, V, 3) normalised, kind) -> folder of frame<tt>.png or None` renders the
    clip's vertices as the clip was rendered (the CLI passes the renderer's replay). `ray_address`:
    clips evaluated in parallel by `workers` Ray actors (default: one per CPU of the cluster), each
    loading the models once; every file is written by this process, so only renders (`render`) need
    `out_dir` on storage every node sees. `total_clips` (the shards' count, when known) gives the
    progress its remaining time."""
    notes = []
    lpips_ok = False
    if render is None:
        notes.append(NO_RENDER_NOTE)
    else:
        lpips_ok = lpips_metric.load(lpips_backbone) is not None
        if not lpips_ok:
            notes.append(lpips_metric.unavailable_reason(lpips_backbone))
    alignment = (actionbench_settings or {}).get("alignment", "similarity")
    notes.append("CD-3D, CD-4D and CD-M aligned by " + (
        "the reference's gradient ICP with a scale per axis (ActionBench's own)" if alignment == "actionbench" else
        "a closed-form similarity ICP, stricter than ActionBench's per-axis scale (eval --alignment actionbench "
        "for figures beside ActionMesh's)"))
    kinds = ["reconstruction"] + (["generation"] if diffusion_checkpoint else []) + list(CONTROLS)
    available = {"": True, "render": render is not None, "lpips": lpips_ok}
    frame = [m for m in metrics("frame") if available[m.needs]]
    # geometry first, then appearance: the column order resumed evaluations (eval.json) were written in
    frame = [m for m in frame if not m.needs] + [m for m in frame if m.needs]
    columns = [(k, m.name) for k in kinds for m in frame if m.controls or k not in CONTROLS]
    settings = {"vae": os.path.abspath(vae_checkpoint), "diffusion": diffusion_checkpoint and
                os.path.abspath(diffusion_checkpoint), "eval_points": eval_points, "seed": seed,
                "actionbench_points": actionbench_points, "actionbench": actionbench_settings or {},
                "columns": [f"{k}_{m}" for k, m in columns],
                "points": "nested"}  # how the points are drawn: folders drawn otherwise are not resumed
    os.makedirs(out_dir, exist_ok=True)
    settings_path = os.path.join(out_dir, "eval.json")
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            before = json.load(f)
        if before != settings:
            changed = sorted(k for k in settings if before.get(k) != settings[k])
            raise ValueError(f"{out_dir} holds an evaluation with other settings ({', '.join(changed)}): "
                             "give a new --out, or delete it to start again")
    evaluator_args = (vae_checkpoint, diffusion_checkpoint, eval_points, seed, device, render, actionbench_points,
                      actionbench_settings, lpips_backbone)
    local = None if ray_address else ClipEvaluator(*evaluator_args)  # a bad checkpoint fails before any write
    atomic_write(settings_path, json.dumps(settings, indent=1).encode())
    tables = ClipTables(out_dir, columns)
    results = _kept_clips(out_dir)
    tables.rewrite(results)
    done = {r["key"] for r in results}
    if done:
        print(f"resuming: {len(done)} clips already evaluated in {out_dir}", flush=True)
    wanted = min(x for x in (max_clips, total_clips) if x is not None) if (max_clips or total_clips) else None

    def todo():  # (index, sample) of the clips still to evaluate, in the shards' order
        index = len(results)
        for sample in wds.WebDataset(shards, shardshuffle=False):
            if max_clips is not None and index >= max_clips:
                return
            if sample["__key__"] not in done:
                yield index, sample
                index += 1

    finished = (_on_ray(todo(), evaluator_args, ray_address, workers) if ray_address
                else ((i, local.evaluate_sample(sample)) for i, sample in todo()))
    bar = tqdm(desc="evaluating clips", unit="clip", total=wanted, initial=len(results))
    started, new = time.perf_counter(), 0
    for index, r in finished:
        _keep_clip(out_dir, index, r)
        tables.append(r)
        results.append({**r, "index": index})
        new += 1
        bar.set_postfix_str(f"{3600 * new / (time.perf_counter() - started):.0f} clips/hour")
        bar.update(1)
    bar.close()
    if new:
        seconds = time.perf_counter() - started
        print(f"evaluated {new} clips in {seconds:.0f} s: {3600 * new / seconds:.0f} clips/hour", flush=True)
    if not results:
        raise ValueError(f"no clips in {shards}")
    results.sort(key=lambda r: r["index"])
    tables.rewrite(results)  # in the shards' order, however the clips finished
    table_path = os.path.join(out_dir, "table.md")
    summary = summarise(results, kinds)
    atomic_write(table_path, table_markdown(summary, len(results), notes, eval_points).encode())
    shown = [_with_sheet_data(out_dir, r) for r in results[:SHEET_CLIPS]]
    sheet = contact_sheet(shown, os.path.join(out_dir, "contact_sheet.png"))
    frames = frames_sheet(shown, os.path.join(out_dir, "contact_sheet_frames.png"))
    return {"contact_sheet_frames": frames, "clips": len(results), "table": summary, "table_path": table_path,
            "csv": tables.per_frame, "actionbench_csv": tables.actionbench, "contact_sheet": sheet}
