"""Seconds per image for one clip: our renderer against a naive per-view Blender loop.

    python benchmarks/render_clip.py [--asset ../shared/assets/fox.glb] [--pipeline demo]
        [--keyframes T] [--resolution R] [--samples S] [--out DIR]
        [--peer-script PATH [--peer-args TEMPLATE]]

Renders the asset's first clip at the pipeline's settings (the options override them for quick
trials) twice, each in a fresh process so both start cold: (1) render.launcher.render_asset, (2)
benchmarks/naive_render.py, which renders the same keyframes, light and cameras. An image is one
view of one keyframe. Aims: naive/ours >= 1.5x, and under 10% of our clip's time outside rendering.

With `--peer-script`, a public Objaverse rendering script the user supplies (for example
objaverse-xl's scripts/rendering/blender_script.py) also runs, in the same run, on the same asset with
as many images: `python SCRIPT -- ARGS` with this project's Python (bpy as a module; such scripts
read their arguments after "--"), ARGS from `--peer-args` with {asset}, {out}, {images}, {views},
{samples}, {resolution} filled in. Its seconds per image are its wall time over the PNGs it wrote.
Its own camera, light and sample choices stay its own: the figure compares what each script costs
per image as a user runs it.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from curation.pipeline_config import load_pipeline  # noqa: E402
from render.launcher import render_asset  # noqa: E402

AIM_RATIO, AIM_OUTSIDE = 1.5, 0.10


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_naive(asset: str, meta_path: str, out_dir: str) -> dict:
    """Wall time of the whole child process; its loop time comes from the child, the rest is import."""
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "naive_render.py"),
                           asset, meta_path, out_dir], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"naive render failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    # Blender logs to stdout too; the child's result is its last JSON line.
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    res["wall_s"] = wall
    return res


def pixel_diff(clip_dir: str, naive_dir: str, frames: int, views: int) -> tuple[int, float]:
    """Largest and mean 8-bit difference between our frames and the naive views (0: the same images)."""
    diffs = []
    for t in range(frames):
        ours = np.asarray(Image.open(os.path.join(clip_dir, f"frame{t:02d}.png")).convert("RGBA"), np.int16)
        naive = np.concatenate([np.asarray(Image.open(os.path.join(naive_dir, f"frame{t:02d}_view{v}.png"))
                                           .convert("RGBA"), np.int16) for v in range(views)], axis=1)
        diffs.append(np.abs(ours - naive))
    diffs = np.stack(diffs)
    return int(diffs.max()), float(diffs.mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asset", default=os.path.join(ROOT, "..", "shared", "assets", "fox.glb"))
    ap.add_argument("--pipeline", default="demo")
    ap.add_argument("--keyframes", type=int, help="T keyframes (default: the pipeline's)")
    ap.add_argument("--resolution", type=int, help="pixels per side (default: the pipeline's)")
    ap.add_argument("--samples", type=int, help="Cycles samples (default: the pipeline's)")
    ap.add_argument("--out", help="output folder (default: a new temp folder, kept)")
    ap.add_argument("--peer-script", help="a peer's Blender rendering script to time on the same asset")
    ap.add_argument("--peer-args", default="--object_path {asset} --output_dir {out} --engine CYCLES "
                                          "--num_renders {images}",
                    help="its arguments (after '--'); default: objaverse-xl's blender_script.py")
    args = ap.parse_args()

    job = load_pipeline(args.pipeline).job_settings()
    job.gate = {}  # every clip rendered: this measures rendering, not what the filters would skip
    if args.keyframes:
        job.keyframes.count = args.keyframes
    if args.resolution:
        job.render.resolution = args.resolution
    if args.samples:
        job.render.samples = args.samples
    job.render.validate()
    job.keyframes.validate()
    rs = job.render
    asset = os.path.abspath(args.asset)
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="render-clip-bench-"))

    print("command:  ", shlex.join([sys.executable] + sys.argv))
    print("machine:  ", f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    print("bpy:      ", importlib.metadata.version("bpy"))
    print("settings: ", f"pipeline {args.pipeline}, {os.path.basename(asset)}, {rs.engine} {rs.device} "
          f"{rs.samples} samples, denoise {rs.denoise} (prefilter {rs.denoise_prefilter}), "
          f"{rs.resolution}x{rs.resolution}, "
          f"{job.keyframes.count} keyframes x {rs.views} views")
    print("outputs:  ", out)

    # 1. Our renderer. Unattributed wall time (interpreter + bpy start-up) counts as import.
    res = render_asset(asset, os.path.join(out, "ours"), job)
    if not res.ok or not res.clips:
        sys.exit(f"our renderer failed: {res.failure or res.skipped}\n{res.log_tail}")
    clip = res.clips[0]
    images = clip["keyframes"] * rs.views
    tm = {k: res.timings.get(k, 0.0) for k in ("import", "evaluate", "render", "write")}
    ours = {"import": tm["import"] + res.seconds - sum(res.timings.values()), "evaluate": tm["evaluate"],
            "render": tm["render"], "write": tm["write"], "total": res.seconds}
    outside = 1.0 - tm["render"] / res.seconds

    # 2. The naive loop, on the keyframes, light and cameras our clip recorded.
    nv = run_naive(asset, os.path.join(clip["dir"], "meta.json"), os.path.join(out, "naive"))
    assert nv["images"] == images, (nv["images"], images)
    naive = {"import": nv["wall_s"] - nv["loop_s"], "loop": nv["loop_s"], "total": nv["wall_s"]}

    # 3. The table, seconds per image.
    print(f"\n{images} images ({clip['keyframes']} keyframes x {rs.views} views), seconds per image:")
    print(f"{'stage':<34}{'ours':>9}{'naive':>9}")
    rows = [("import + process start-up", ours["import"], naive["import"]),
            ("evaluate (frame + vertex export)", ours["evaluate"], None),
            ("render (pure)", ours["render"], None),
            ("write (frames, arrays, json)", ours["write"], None),
            ("render+write loop", ours["evaluate"] + ours["render"] + ours["write"], naive["loop"]),
            ("total", ours["total"], naive["total"])]
    for name, a, b in rows:
        print(f"{name:<34}{a / images:>9.3f}" + (f"{b / images:>9.3f}" if b is not None else f"{'-':>9}"))
    ratio = naive["total"] / ours["total"]  # same image count: the per-image ratio
    print(f"\nclip wall time: ours {ours['total']:.1f} s, naive {naive['total']:.1f} s")
    print(f"speed-up naive/ours: {ratio:.2f}x (aim >= {AIM_RATIO}x: {'met' if ratio >= AIM_RATIO else 'NOT met'})")
    print(f"ours outside pure rendering: {outside:.1%} of the clip's time "
          f"(aim < {AIM_OUTSIDE:.0%}: {'met' if outside < AIM_OUTSIDE else 'NOT met'})")
    diff, mean_diff = pixel_diff(clip["dir"], os.path.join(out, "naive"), clip["keyframes"], rs.views)
    print(f"same images both ways: {'yes' if diff == 0 else 'no'} "
          f"(pixel difference: max {diff}/255, mean {mean_diff:.3f}/255)")
    print(f"outputs: ours {clip['dir']}\n         naive {os.path.join(out, 'naive')}")
    if args.peer_script:
        peer = run_peer(args.peer_script, args.peer_args, asset, os.path.join(out, "peer"), images, rs)
        print(f"peer script {os.path.basename(args.peer_script)}: {peer['images']} images in {peer['wall_s']:.1f} s, "
              f"{peer['wall_s'] / max(peer['images'], 1):.3f} s per image; ours {ours['total'] / images:.3f} s per image "
              f"(peer/ours {peer['wall_s'] / max(peer['images'], 1) / (ours['total'] / images):.2f}x); "
              f"command: {shlex.join(peer['command'])}")
    return 0


def run_peer(script: str, template: str, asset: str, out_dir: str, images: int, rs) -> dict:
    """Time a peer's rendering script on `asset`; count the PNGs it wrote under `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    fill = {"asset": asset, "out": out_dir, "images": images, "views": rs.views, "samples": rs.samples,
            "resolution": rs.resolution}
    cmd = [sys.executable, os.path.abspath(script), "--", *shlex.split(template.format(**fill))]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"the peer script failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    pngs = sum(name.endswith(".png") for _, _, files in os.walk(out_dir) for name in files)
    return {"images": pngs, "wall_s": wall, "command": cmd}


if __name__ == "__main__":
    sys.exit(main())
