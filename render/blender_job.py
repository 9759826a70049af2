"""The per-asset Blender job: import, then one clip folder per animation (runs inside bpy).

Started by `render.launcher` as `python -m render.blender_job --request REQ.json`; it writes its
result (clips written, clips skipped with reasons, or a failure with a kind) to the request's
`result` path. Only the launcher reads that file; a crash leaves no result, which the launcher
reports as kind "crash".
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import time
from dataclasses import dataclass

from render.job_request import AssetFailure, serve, start_job_process

start_job_process()  # before bpy starts its thread pools, so they keep to this job's cores

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from render import cameras, engine, geometry, lighting, scene, texture_evidence
from render.clip_writer import ClipWriter, clip_key
from render.keyframes import ClipTooShort, choose_windows, clip_seed
from render.settings import JobSettings


class Timer:
    """Accumulates seconds per stage: import, evaluate (frame change + vertex export), render, write."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


class Progress:
    """Latest progress, replaced atomically in a small JSON file the launcher polls. It carries the
    clips committed so far, so a job that dies still reports the complete clips it left."""

    def __init__(self, path: str | None):
        self.path = path

    def __call__(self, **state) -> None:
        if self.path:
            with open(self.path + ".tmp", "w") as f:
                json.dump(state, f)
            os.replace(self.path + ".tmp", self.path)


def render_asset(asset: str, uid: str, out_dir: str, job: JobSettings, extra_meta: dict,
                 progress: Progress = Progress(None)) -> dict:
    timer = Timer()
    t = time.perf_counter()
    scene.reset_blender()
    try:
        scene.import_asset(asset)
    except scene.UnreadableAsset as exc:
        raise AssetFailure("unreadable", str(exc)) from exc
    except scene.UnsupportedFormat as exc:
        raise AssetFailure("unsupported_format", str(exc)) from exc
    meshes = scene.counted_meshes()
    if not meshes:
        raise AssetFailure("no_geometry", f"{asset}: no visible, renderable mesh")
    actions = scene.animations()
    if not actions:
        raise AssetFailure("no_animation", f"{asset}: the file has no animation")
    rest = scene.RestState()
    rs, ks = job.render, job.keyframes
    evidence = {"scene": texture_evidence.gather(meshes), "file": texture_evidence.file_evidence(asset)}
    used = engine.configure(rs)
    views = cameras.orbit_views(rs.views, rs.resolution, rs.fov_deg, rs.elevation_deg, rs.volume_size)
    cams = engine.make_cameras(views, rs.fov_deg)
    fps = bpy.context.scene.render.fps / bpy.context.scene.render.fps_base
    t = timer.add("import", t)

    asset_info = {"meshes": [o.name for o in meshes], "texture_evidence": evidence,
                  "animations": [a.name for a in actions], "fps": fps,
                  "blender": bpy.app.version_string}
    clips, skipped = [], []
    asset_job = AssetJob(uid, out_dir, job, extra_meta, meshes, cams, views, fps, evidence, used, timer, progress,
                         clips, len(actions))
    for index, action in enumerate(actions):
        start, end = scene.action_frame_range(action)
        # one seeded stream per window; the first is the paper's per-animation stream
        seeds = [clip_seed(job.seed, uid, index if w == 0 else f"{index}w{w}")
                 for w in range(ks.windows_per_animation)]
        base = {"animation": action.name, "animation_index": index, "frame_range": [start, end]}
        scene.play(action, rest)
        try:
            motion = None
            if ks.selection == "motion" and end - start + 1 >= max(ks.count, ks.min_source_frames):
                t = time.perf_counter()
                motion = motion_profile(meshes, start, end)
                t = timer.add("motion", t)
            rngs = [np.random.default_rng(c) for c in seeds]
            windows = choose_windows(start, end, ks.count, ks.max_spacing, rngs, ks.short_clip,
                                     ks.min_source_frames, ks.selection, motion)
        except ClipTooShort as exc:
            skipped.append({**base, "reason": "too_short", "detail": str(exc)})
            continue
        except geometry.VertexCountChanged as exc:
            skipped.append({**base, "reason": "vertex_count_changed", "detail": str(exc)})
            continue
        for w, (keyframes, subframes, window) in enumerate(windows):
            # the window's stream goes on to draw its light, as the paper's does after its keyframes
            clip = _one_clip(asset_job, Window(index, w, action, base, keyframes, subframes, window,
                                               seeds[w], rngs[w]))
            (clips if "dir" in clip else skipped).append(clip)
    return {"status": "ok", "clips": clips, "skipped": skipped, "asset": asset_info,
            "timings": timer.seconds}


def motion_profile(meshes, start: int, end: int, max_vertices: int = 4096) -> np.ndarray:
    """How far the vertices move over each source-frame step of the action (start..end), as the mean
    over at most `max_vertices` of them, relative to the first frame's size: depsgraph evaluation
    only, one per source frame."""
    scene.set_frame(start)
    v, counts = geometry.world_vertices(meshes)
    pick = np.linspace(0, len(v) - 1, min(len(v), max_vertices)).astype(int)
    size = float((v.max(0) - v.min(0)).max()) or 1.0
    prev, steps = v[pick], []
    for frame in range(start + 1, end + 1):
        scene.set_frame(frame)
        v, _ = geometry.world_vertices(meshes, counts)
        steps.append(float(np.linalg.norm(v[pick] - prev, axis=1).mean()) / size)
        prev = v[pick]
    return np.asarray(steps)


@dataclass
class AssetJob:
    """What every clip of one imported asset shares."""
    uid: str
    out_dir: str
    job: JobSettings
    extra_meta: dict
    meshes: list
    cams: list
    views: list
    fps: float
    evidence: dict       # texture evidence of the scene and the file
    used: dict           # the engine settings in effect
    timer: Timer
    progress: Progress
    clips: list          # the clips committed so far (reported with progress)
    n_actions: int


@dataclass
class Window:
    """One window of one animation: which keyframes, and the random stream that draws its light."""
    index: int           # the animation's index
    w: int               # the window's index within the animation
    action: object       # bpy.types.Action
    base: dict           # the entry fields every outcome of the window carries
    keyframes: list
    subframes: bool
    window: dict
    seed: int
    rng: np.random.Generator


def _one_clip(a: AssetJob, c: Window) -> dict:
    """Render (or decide before rendering) one window of one animation and commit its folder: the
    clip's entry, or a skipped entry with its reason."""
    uid, job, timer, base, keyframes, subframes, w = a.uid, a.job, a.timer, c.base, c.keyframes, c.subframes, c.w
    rs = job.render
    key = clip_key(uid, c.index, w)
    writer = ClipWriter(a.out_dir, key)
    try:
        report = functools.partial(a.progress, animation=c.action.name, clip=c.index + 1,
                                   clips=a.n_actions, frames=len(keyframes), done=a.clips)
        meta = render_clip(writer, a.meshes, a.cams, a.views, keyframes, c.rng, job, timer, report,
                           [int(f) if not subframes else round(float(f), 4) for f in keyframes])
    except (geometry.VertexCountChanged, DegenerateClip) as exc:
        writer.abort()
        reason = "vertex_count_changed" if isinstance(exc, geometry.VertexCountChanged) else "degenerate_bbox"
        return {**base, "reason": reason, "detail": str(exc)}
    except BaseException:
        writer.abort()
        raise
    images, seconds = meta.pop("images"), meta.pop("seconds")  # reported, not stored: bytes do not depend on them
    meta.update({**a.extra_meta, "uid": uid, "key": key, **base, "fps": a.fps,
                 "keyframes": [int(f) if not subframes else round(float(f), 4) for f in keyframes],
                 "subframes": subframes, "seed": job.seed, "clip_seed": c.seed,
                 "texture_evidence": a.evidence, "blender": bpy.app.version_string,
                 "render": {**a.used, "resolution": rs.resolution, "views": rs.views,
                            "fov_deg": rs.fov_deg, "elevation_deg": rs.elevation_deg,
                            "volume_size": rs.volume_size, **meta.pop("light")}})
    if c.window.get("selection") == "motion" or w > 0:  # the paper's choice adds nothing to its meta
        meta["window"] = {**c.window, "index": w}
    writer.write_json("meta.json", meta)
    t = time.perf_counter()
    path = writer.commit()
    timer.add("write", t)
    return {**base, "key": key, "window": w, "dir": path, "keyframes": len(keyframes), "images": images,
            "seconds": seconds,
            "vertices": meta["vertices"], "faces": meta["faces"], "subframes": subframes,
            "decided_before_render": bool(meta.get("decided_before_render"))}


class DegenerateClip(Exception):
    """The first keyframe's bounding box has no extent: nothing to normalize or frame."""


def render_clip(writer: ClipWriter, meshes, cams, views, keyframes, rng, job: JobSettings,
                timer: Timer, report, meta_keyframes: list) -> dict:
    """Evaluate the clip's vertices at every keyframe, ask the gate (if any) whether the clip can
    still pass, and render it only then. A clip the gate rejects is written without frames, its
    verdict in the meta (`decided_before_render`). The light is drawn before the gate asks, so the
    random draws (and the images) of a clip are the same with the gate on or off."""
    rs = job.render
    t = started = time.perf_counter()
    scene.set_frame(keyframes[0])
    v0, counts = geometry.world_vertices(meshes)
    lo, hi = v0.min(0), v0.max(0)
    extent = float((hi - lo).max())
    if not extent > 1e-9:
        raise DegenerateClip(f"first keyframe bounding box extent {extent}")
    offset, scale = (lo + hi) / 2.0, 1.0 / extent
    faces = geometry.triangles(meshes)
    verts = np.empty((len(keyframes), len(v0), 3), dtype=np.float32)
    verts[0] = (v0 - offset) * scale
    for ti, frame in enumerate(keyframes[1:], start=1):  # depsgraph evaluation only: no rendering
        scene.set_frame(frame)
        v, _ = geometry.world_vertices(meshes, counts)
        verts[ti] = (v - offset) * scale
    t = timer.add("evaluate", t)
    light = lighting.draw_light(rs.light, rng)
    camera_json = {"convention": "opencv", "width": rs.resolution, "height": rs.resolution,
                   "views": [{"name": v["name"], "azimuth_deg": v["azimuth_deg"], "K": v["K"].tolist(),
                              "w2c": v["w2c"].tolist()} for v in views]}
    out = {"normalization": {"offset": offset.tolist(), "scale": scale}, "light": light,
           "vertices": int(verts.shape[1]), "faces": int(len(faces)), "meshes": len(meshes), "images": 0,
           "seconds": {"evaluate": time.perf_counter() - started}}
    if job.gate:
        verdict = importlib.import_module(job.gate["module"]).gate(
            {"verts": verts, "faces": faces, "cameras": camera_json,
             "meta": {"keyframes": meta_keyframes, "render": {"volume_size": rs.volume_size}}},
            job.gate["settings"])
        out["seconds"]["gate"] = time.perf_counter() - t
        t = timer.add("gate", t)
        if verdict["rule"] is not None:  # rejected on geometry: not one image rendered
            writer.write_arrays(verts, faces)
            writer.write_json("cameras.json", camera_json)
            return {**out, "decided_before_render": True, "gate": verdict}
    d = cameras.camera_distance(rs.volume_size, rs.fov_deg, rs.elevation_deg)
    engine.place_cameras(cams, [cameras.blender_camera_matrix(v["w2c"], offset, scale) for v in views],
                         clip_start=0.01 / scale, clip_end=(d + 2.0 * rs.volume_size) / scale)
    lighting.apply_light(light)
    rendering = time.perf_counter()
    for ti, frame in enumerate(keyframes):
        scene.set_frame(frame)
        t = timer.add("evaluate", t)
        for vi, cam in enumerate(cams):
            engine.render_view(cam, writer.view_path(vi))
        out["images"] += len(cams)
        t = timer.add("render", t)
        writer.write_frame(ti, len(cams))
        report(frame=ti + 1)
        t = timer.add("write", t)
    writer.write_arrays(verts, faces)
    writer.write_json("cameras.json", camera_json)
    timer.add("write", t)
    out["seconds"]["render"] = time.perf_counter() - rendering  # frames, renders and writes
    return out


def main(argv=None) -> int:
    return serve(argv, __doc__, lambda req: render_asset(
        req["asset"], req["uid"], req["out_dir"], JobSettings.from_dict(req["settings"]),
        req.get("extra_meta", {}), Progress(req.get("progress"))))


if __name__ == "__main__":
    sys.exit(main())
