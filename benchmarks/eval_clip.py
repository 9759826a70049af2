"""Seconds per clip of `driveanymesh eval` without rendering (Table 1's Chamfer and L2, ActionBench's
CD-3D, CD-4D and CD-M, the following figures), for every kind: the VAE's reconstruction and the two
controls (first frame held, time-mean pose).

    python benchmarks/eval_clip.py --shards SHARD [SHARD ...] [--vae CKPT] [--clips 2] [--before CHECKOUT]

Without --vae, a `vae-learn`-sized VAE with random weights (written in the training format, so the
timed path is the real one; its predictions are as costly to score as a trained model's). The
evaluation's own defaults: 10,000 Chamfer points and 100,000 ActionBench points per frame (as many
as a clip's dense points allow). With --before the same clips are evaluated by an earlier
checkout's code too, alternating the two twice in one run, with the ratio.
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

from checkouts import alternate  # noqa: E402


def untrained_vae(work: str) -> str:
    import dataclasses

    import torch

    from model.vae import VAE, VAEConfig
    from train import checkpoint
    from train.config import load_train_config

    cfg = load_train_config("vae-learn", "vae")
    torch.manual_seed(0)
    model = VAE(cfg.vae)
    checkpoint.save(os.path.join(work, "vae"), 0, {"config": {**dataclasses.asdict(cfg), "kind": "vae"},
                                                   "model": model.state_dict()})
    return checkpoint.latest(os.path.join(work, "vae"))


def child(args) -> int:
    import torch

    from train.evaluate import evaluate

    torch.set_num_threads(os.cpu_count())
    out = tempfile.mkdtemp(prefix="eval-bench-")
    t = time.perf_counter()
    res = evaluate(args.shards, args.vae, out, max_clips=args.clips, device="cpu")
    seconds = time.perf_counter() - t
    print(json.dumps({"s_per_clip": seconds / res["clips"], "clips": res["clips"]}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", nargs="+", required=True)
    ap.add_argument("--vae")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--before", help="an earlier checkout, evaluated in the same run")
    ap.add_argument("--code", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.code:
        return child(args)
    vae = args.vae or untrained_vae(tempfile.mkdtemp(prefix="eval-bench-vae-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; VAE {vae}; "
          f"{args.clips} clips, without rendering", flush=True)
    argv = ["--shards", *args.shards, "--vae", vae, "--clips", str(args.clips)]
    best = alternate(__file__, argv, args.before, ROOT, min, lambda v: f"{v:.1f}")
    for name, figures in best.items():
        print(f"{name}: {figures['s_per_clip']:.1f} s per clip ({figures['clips']} clips)")
    if args.before:
        print(f"after / before: {best['this checkout']['s_per_clip'] / best['before']['s_per_clip']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
