"""VAE samples per second from shards, beside the raw read speed of the same tar files.

    python benchmarks/loader.py SHARD [SHARD ...] [--samples N] [--workers 0 1 2]

Raw: every sample's bytes read through webdataset (no decoding). VAE: the training loader's examples
(P1 of N=2048 points by random + FPS sampling of the rebuilt dense points, Pt at a random keyframe,
4 views of that keyframe decoded, matted, resized, with Pluecker rays) at 256 x 256, batch 1, over
as many passes of the shards as it takes to reach --samples.
"""
import argparse
import os
import platform
import sys
import time

import webdataset as wds

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dataset.loaders import LoaderConfig, make_loader  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", nargs="+")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--image-size", type=int, default=256)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    size = sum(os.path.getsize(s) for s in args.shards)

    t, n, read = time.perf_counter(), 0, 0
    while n < args.samples:
        for s in wds.WebDataset(args.shards, shardshuffle=False):
            n += 1
            read += sum(len(v) for k, v in s.items() if isinstance(v, bytes))
    raw = time.perf_counter() - t
    print(f"raw read: {n} samples ({size / 1e6:.1f} MB in {len(args.shards)} shards) at {n / raw:.1f} samples/s, "
          f"{read / raw / 1e6:.0f} MB/s")

    cfg = LoaderConfig(image_size=args.image_size, shuffle_buffer=0)
    for workers in args.workers:
        t, n, epoch = time.perf_counter(), 0, 0
        while n < args.samples:
            for batch in make_loader(args.shards, "vae", cfg, batch_size=1, num_workers=workers, epoch=epoch,
                                     drop_last=False):
                n += 1
            epoch += 1
        rate = n / (time.perf_counter() - t)
        print(f"VAE examples, {workers} worker processes: {rate:.1f} samples/s ({n} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
