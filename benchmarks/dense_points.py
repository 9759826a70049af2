"""Store dense points in the shards, or regenerate them in the loader? Prints, per rendered clip
folder: dense point count, time to build the subdivision map and to apply it to all keyframes, and
the sample's bytes (as a one-sample tar) without and with a float16 points.npy.

    python benchmarks/dense_points.py CLIP_DIR [CLIP_DIR ...] [--min-points 50000]
"""
import argparse
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dataset.shard_writer import encode_tar  # noqa: E402
from dataset.subdivision import dense_points, subdivision_map  # noqa: E402


def sample_of(clip_dir: str) -> dict:
    sample = {"__key__": "clip"}
    for name in sorted(os.listdir(clip_dir)):
        with open(os.path.join(clip_dir, name), "rb") as f:
            sample[name] = f.read()
    return sample


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--min-points", type=int, default=50_000)
    args = ap.parse_args()
    print(f"{'clip':<28} {'V':>7} {'F':>7} {'N':>8} {'map ms':>7} {'apply ms':>8} {'points MB':>9} "
          f"{'tar MB':>7} {'+points':>8} {'ratio':>6} {'f16 err':>8}")
    for clip in args.clips:
        verts = np.load(os.path.join(clip, "verts.npy"))
        faces = np.load(os.path.join(clip, "faces.npy"))
        t0 = time.perf_counter()
        S, _ = subdivision_map(faces, verts.shape[1], args.min_points)
        t1 = time.perf_counter()
        pts = dense_points(verts, S)
        t2 = time.perf_counter()
        buf = io.BytesIO()
        np.save(buf, pts.astype(np.float16))
        sample = sample_of(clip)
        plain = len(encode_tar([sample]))
        full = len(encode_tar([{**sample, "points.npy": buf.getvalue()}]))
        err = float(np.abs(pts.astype(np.float16).astype(np.float32) - pts).max())
        print(f"{os.path.basename(clip.rstrip('/')):<28} {verts.shape[1]:>7} {len(faces):>7} {S.shape[0]:>8} "
              f"{(t1 - t0) * 1e3:>7.1f} {(t2 - t1) * 1e3:>8.1f} {len(buf.getvalue()) / 1e6:>9.2f} "
              f"{plain / 1e6:>7.2f} {full / 1e6:>8.2f} {full / plain:>6.1f} {err:>8.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
