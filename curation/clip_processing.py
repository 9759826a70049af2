"""One rendered clip folder -> filter decision, label, split, and (if accepted) its shard sample."""
from __future__ import annotations

import io
import json
import os
import time

import numpy as np
from PIL import Image

from curation import audit, overrides
from curation.filters import FilterSettings, RuleResult, run_filters, texture_label
from curation.split import split_of
from dataset.storage import Store
from dataset.subdivision import subdivision_map


def load_clip(clip_dir: str) -> dict:
    """A clip folder as the filters read it (`frames` is empty for a clip decided before rendering)."""
    with open(os.path.join(clip_dir, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(clip_dir, "cameras.json")) as f:
        cams = json.load(f)
    frames = [] if meta.get("decided_before_render") else [
        np.asarray(Image.open(os.path.join(clip_dir, f"frame{t:02d}.png"))) for t in range(len(meta["keyframes"]))]
    return {"dir": clip_dir, "meta": meta, "cameras": cams, "frames": frames,
            "verts": np.load(os.path.join(clip_dir, "verts.npy")),
            "faces": np.load(os.path.join(clip_dir, "faces.npy"))}


THUMB_VIEW = 64  # pixels per view in the report's thumbnails


def thumb_path(key: str) -> str:
    """`thumbs/<2 hex digits>/<key>.png`: 256 folders, so no folder holds 50k files (listing one,
    or browsing one, stays quick on every filesystem and object store)."""
    import hashlib

    return f"thumbs/{hashlib.sha1(key.encode()).hexdigest()[:2]}/{key}.png"


def write_thumbnail(clip: dict, store: Store, rel: str) -> None:
    """First, middle and last keyframe (rows), views side by side, on white: what the report shows."""
    T = len(clip["frames"])
    rows = []
    for t in sorted({0, T // 2, T - 1}):
        rgba = clip["frames"][t].astype(np.float32) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
        rows.append((rgb * 255).astype(np.uint8))
    img = Image.fromarray(np.concatenate(rows, axis=0))
    scale = THUMB_VIEW / clip["cameras"]["height"]
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    store.write(rel, buf.getvalue())


def write_point_thumbnail(clip: dict, store: Store, rel: str) -> None:
    """The thumbnail of a clip decided before rendering: its vertices splatted as dots through the
    clip's own cameras, in the layout of `write_thumbnail` (first, middle, last keyframe; views side
    by side; THUMB_VIEW pixels per view), grey on white."""
    from render.cameras import project

    views, T = clip["cameras"]["views"], len(clip["verts"])
    scale = THUMB_VIEW / clip["cameras"]["height"]
    rows = []
    for t in sorted({0, T // 2, T - 1}):
        panels = []
        for v in views:
            img = np.full((THUMB_VIEW, THUMB_VIEW), 255, np.uint8)
            uv, z = project(clip["verts"][t].astype(np.float64), np.asarray(v["K"]), np.asarray(v["w2c"]))
            px = np.floor(uv * scale).astype(int)
            ok = (z > 0) & (px >= 0).all(1) & (px < THUMB_VIEW).all(1)
            img[px[ok, 1], px[ok, 0]] = 90
            panels.append(img)
        rows.append(np.concatenate(panels, axis=1))
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, axis=0)).convert("RGB").save(buf, format="PNG")
    store.write(rel, buf.getvalue())


def process_clip(clip_dir: str, filters: FilterSettings, test_fraction: float, min_points: int,
                 extra_meta: dict, out: Store | None = None, override: dict | None = None) -> tuple[dict, dict | None]:
    """(the filter-stage audit row, the shard sample or None when rejected). With `out`, the clip's
    thumbnail goes to `thumb_path(key)` there. `override`: a person's decision for this clip
    (curation/overrides.py), which decides over the rules' and is recorded beside it.

    The row's timings split the work into load, thumbnail, filters, subdivision and encoding.
    """
    t0 = time.perf_counter()
    clip = load_clip(clip_dir)
    meta = clip["meta"]
    t1 = time.perf_counter()
    before = bool(meta.get("decided_before_render"))
    if out is not None:
        (write_point_thumbnail if before else write_thumbnail)(clip, out, thumb_path(meta["key"]))
    t2 = time.perf_counter()
    if before:  # the Blender job's geometry gate decided: its verdict, as the rules returned it
        results = [RuleResult(**r) for r in meta["gate"]["results"]]
        status, rule, label = "rejected", meta["gate"]["rule"], texture_label.texture_label(clip, filters)
    else:
        status, rule, results, label = run_filters(clip, filters)
    timings = {"load": t1 - t0, "thumbnail": t2 - t1, "filters": time.perf_counter() - t2}
    split = split_of(meta["uid"], test_fraction)
    textured = "textured" if label["textured"] else "textureless"
    values = {k: v for r in results for k, v in r.values.items()}
    reasons = [f"{r.rule}: {r.reason}" for r in results if not r.passed]
    row = audit.row(meta["uid"], "filter", status, rule=rule, reasons=reasons, values=values,
                    animation=meta["animation"], animation_index=meta["animation_index"],
                    label=textured, split=split, key=meta["key"], timings=timings, decided_before_render=before)
    if not overrides.apply(row, override, before):
        return row, None
    t = time.perf_counter()
    # Dense trajectories are not stored: the loader rebuilds the subdivision map from faces.npy and
    # applies it to verts.npy (exact, float32; ~50 ms per clip) instead of shipping a float16
    # points.npy 4-24x larger than the rest of the sample (figures: docs/BENCHMARKS.md).
    S, _ = subdivision_map(clip["faces"], clip["verts"].shape[1], min_points)
    timings["subdivision"] = time.perf_counter() - t
    t = time.perf_counter()
    meta.update(extra_meta)
    meta.update({"textured": label["textured"], "label": label, "split": split,
                 "filters": {r.rule: r.values for r in results},
                 **({"override": row["override"]} if "override" in row else {}),
                 "dense": {"min_points": min_points, "points": int(S.shape[0])}})
    sample = {"__key__": meta["key"], "meta.json": json.dumps(meta).encode()}
    for name in sorted(os.listdir(clip_dir)):
        if name != "meta.json":
            with open(os.path.join(clip_dir, name), "rb") as f:
                sample[name] = f.read()
    timings["encoding"] = time.perf_counter() - t
    return row, sample
