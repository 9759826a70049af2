"""Accepted clips per render-hour: the paper's choice (random window, every clip rendered, then
filtered) against ours (window by motion, geometry rules before rendering), on one mixed set of
assets, in one run.

    python benchmarks/yield.py [--resolution 64] [--samples 4] [--keyframes 30] [--threads 2]

The set: every demo asset (written fresh) and the real animated GLBs in ../shared/assets/. Each
asset is rendered by the real Blender job under both settings, one after the other, and each clip
goes through the real filters (`process_clip`). Prints, per setting: clips, accepted clips, seconds
spent on clips that were rejected (rendering, or for a clip the gate decides, evaluating its
vertices and running the rules), seconds per accepted clip, and what a geometry-rejected clip cost
against an accepted one.
"""
import argparse
import dataclasses
import glob
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from curation.clip_processing import process_clip  # noqa: E402
from curation.filters import FilterSettings  # noqa: E402
from curation.sources import write_demo_assets  # noqa: E402
from render.launcher import render_asset  # noqa: E402
from render.settings import JobSettings  # noqa: E402

SETTINGS = {"paper (random, render all)": ("random", False), "ours (motion, geometry first)": ("motion", True)}


def clip_seconds(clip: dict) -> float:
    s = clip.get("seconds") or {}
    return sum(s.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--keyframes", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dam-yield-") as work:
        assets = [e["path"] for e in write_demo_assets(os.path.join(work, "demo"), seed=0)
                  if e.get("expect") != "unreadable"]
        assets += sorted(glob.glob(os.path.join(ROOT, "..", "shared", "assets", "*.glb")))
        print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; {len(assets)} assets; {args.resolution} px, "
              f"{args.samples} samples, {args.keyframes} keyframes, {args.threads} render threads", flush=True)
        filters = FilterSettings()
        results = {}
        for name, (selection, gate) in SETTINGS.items():
            job = JobSettings()
            job.render.resolution, job.render.samples, job.render.threads = args.resolution, args.samples, args.threads
            job.keyframes.count, job.keyframes.selection = args.keyframes, selection
            job.gate = {"module": "curation.filters", "settings": dataclasses.asdict(filters)} if gate else {}
            r = {"clips": 0, "accepted": 0, "accepted_s": 0.0, "rejected_s": 0.0, "gated": 0, "gated_s": 0.0,
                 "wall_s": 0.0}
            for i, path in enumerate(assets):
                t = time.perf_counter()
                res = render_asset(path, os.path.join(work, f"{selection}-{gate}", str(i)), job)
                r["wall_s"] += time.perf_counter() - t
                for c in res.clips:
                    row, _ = process_clip(c["dir"], filters, 0.1, 2000, {})
                    r["clips"] += 1
                    if row["status"] == "accepted":
                        r["accepted"] += 1
                        r["accepted_s"] += clip_seconds(c)
                    else:
                        r["rejected_s"] += clip_seconds(c)
                    if c.get("decided_before_render"):
                        r["gated"] += 1
                        r["gated_s"] += clip_seconds(c)
            results[name] = r
            per = (r["accepted_s"] + r["rejected_s"]) / max(r["accepted"], 1)
            print(f"{name}: {r['clips']} clips, {r['accepted']} accepted; seconds on rejected clips "
                  f"{r['rejected_s']:.1f}, on accepted {r['accepted_s']:.1f}; seconds per accepted clip {per:.1f}"
                  + (f"; {r['gated']} decided before rendering at {r['gated_s'] / max(r['gated'], 1):.2f} s each "
                     f"({100 * r['gated_s'] / max(r['gated'], 1) / (r['accepted_s'] / max(r['accepted'], 1)):.1f}% "
                     f"of an accepted clip)" if gate else "") + f"; jobs' wall time {r['wall_s']:.0f} s", flush=True)
        a, b = results.values()
        pa = (a["accepted_s"] + a["rejected_s"]) / max(a["accepted"], 1)
        pb = (b["accepted_s"] + b["rejected_s"]) / max(b["accepted"], 1)
        print(f"seconds per accepted clip: {pa:.1f} -> {pb:.1f} ({100 * (1 - pb / pa):.0f}% less); share of the "
              f"paper setting's clips rejected: {100 * (a['clips'] - a['accepted']) / max(a['clips'], 1):.0f}%")


if __name__ == "__main__":
    main()
