"""Training examples per second from shards, beside the raw read speed of the same tar files.

    python benchmarks/loader.py SHARD [SHARD ...] [--samples N] [--workers 0 1 2]
    python benchmarks/loader.py SHARD [SHARD ...] --diffusion [--before CHECKOUT] [--workers 0]

Raw: every sample's bytes read through webdataset (no decoding). VAE: the training loader's examples
(P1 of N=2048 points by random + FPS sampling of the rebuilt dense points, Pt at a random keyframe,
4 views of that keyframe decoded, matted, resized, with Pluecker rays) at 256 x 256, batch 1, over
as many passes of the shards as it takes to reach --samples.

--diffusion times the diffusion loader instead (T'=10 keyframes: their view-0 video frames and P1),
from the plain shards (with the VAE views of those keyframes) and from a latent cache of them (with
their latents; written first into a temporary folder by a VAE of the paper's M=512, C0=32 whose
other sizes are tiny: the latents' values do not change the loader's work). With --before the same
figures come from an earlier checkout's loader too, alternating the two twice in one run, with each
figure's ratio (after / before).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --code ROOT (the --before child) imports that checkout's packages instead of this one's.
CODE = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else ROOT
sys.path.insert(0, CODE)
import webdataset as wds  # noqa: E402

from checkouts import alternate  # noqa: E402
from dataset.loaders import LoaderConfig, make_loader  # noqa: E402


def rate(shards, kind: str, cfg, samples: int, workers: int) -> float:
    t, n, epoch = time.perf_counter(), 0, 0
    while n < samples:
        for _ in make_loader(shards, kind, cfg, batch_size=1, num_workers=workers, epoch=epoch, drop_last=False):
            n += 1
        epoch += 1
    return n / (time.perf_counter() - t)


def latent_cache(shards: list[str]) -> list[str]:
    import torch

    from model.vae import VAE, VAEConfig
    from train.latent_cache import encode_shards

    torch.manual_seed(0)
    vae = VAE(VAEConfig(num_latents=512, latent_channels=32, width=32, heads=2, encoder_depth=1, decoder_depth=1,
                        image_size=32, patch_size=8, vit_depth=1, num_freqs=4)).eval()
    out = tempfile.mkdtemp(prefix="latent-cache-")
    cfg = LoaderConfig(image_size=32)  # the encoder's input; the cached P1 is the same at any image size
    return encode_shards(vae, shards, out, cfg)


def diffusion_child(args) -> int:
    cfg = LoaderConfig(image_size=args.image_size, shuffle_buffer=0)
    figures = {}
    for workers in args.workers:
        figures[f"plain shards, {workers} workers"] = rate(args.shards, "diffusion", cfg, args.samples, workers)
        figures[f"latent cache, {workers} workers"] = rate(args.cache, "diffusion", cfg, args.samples, workers)
    print(json.dumps(figures), flush=True)
    return 0


def compare_diffusion(args) -> int:
    cache = latent_cache(args.shards)
    print(f"latent cache of {len(args.shards)} shards in {os.path.dirname(os.path.dirname(cache[0]))}", flush=True)
    argv = [*map(os.path.abspath, args.shards), "--diffusion", "--samples", str(args.samples), "--image-size",
            str(args.image_size), "--workers", *map(str, args.workers), "--cache", *cache]
    best = alternate(__file__, argv, args.before, ROOT, max, lambda v: f"{v:.1f}/s")
    for key, value in best["this checkout"].items():
        line = f"diffusion examples, {key}: {value:.1f} samples/s"
        if args.before:
            line += f" (before {best['before'][key]:.1f}, ratio {value / best['before'][key]:.2f})"
        print(line)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shards", nargs="+")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--diffusion", action="store_true", help="the diffusion loader, plain and from a latent cache")
    ap.add_argument("--before", help="with --diffusion: an earlier checkout, timed in the same run")
    ap.add_argument("--cache", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--code", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.diffusion:
        return diffusion_child(args) if args.code else compare_diffusion(args)
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
        print(f"VAE examples, {workers} worker processes: {rate(args.shards, 'vae', cfg, args.samples, workers):.1f} "
              f"samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
