"""Time to drive a 50,000-vertex mesh for a 30-frame clip, end to end through `train.drive.drive`.

    python benchmarks/drive.py --vae CKPT --diffusion CKPT [--frames 30] [--vertices 50000]
    python benchmarks/drive.py --untrained [--tiny]   # paper-size (or tiny) models with random weights

The mesh: a UV sphere (trimesh) with at least --vertices vertices, written as a GLB. The video: that asset's front view is not needed for timing, so a folder of plain frames is
used. Untrained checkpoints are written in the training format, so the timed path is the real one.
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model.denoiser import Denoiser, DenoiserConfig  # noqa: E402
from model.vae import VAE, VAEConfig  # noqa: E402
from train import checkpoint  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.drive import drive  # noqa: E402


def dense_mesh(work: str, vertices: int) -> str:
    import trimesh

    n = 8
    while len(trimesh.creation.uv_sphere(count=[n, n]).vertices) < vertices:
        n += 1
    mesh = trimesh.creation.uv_sphere(count=[n, n])
    path = os.path.join(work, f"mesh_{len(mesh.vertices)}.glb")
    mesh.export(path)
    return path


def untrained(work: str, tiny: bool) -> tuple[str, str]:
    cfg = TrainConfig()
    if tiny:
        cfg.vae, cfg.denoiser = VAEConfig.tiny(), DenoiserConfig.tiny()
        cfg.denoiser = dataclasses.replace(cfg.denoiser, latent_channels=cfg.vae.latent_channels)
    vae_cfg = {**dataclasses.asdict(cfg), "kind": "vae"}
    checkpoint.save(os.path.join(work, "vae"), 0, {"config": vae_cfg, "model": VAE(cfg.vae).state_dict()})
    diff_cfg = {**dataclasses.asdict(cfg), "kind": "diffusion"}
    checkpoint.save(os.path.join(work, "diffusion"), 0, {"config": diff_cfg, "model": Denoiser(cfg.denoiser).state_dict(),
                                                         "ema": None, "latent_stats": [0.0, 1.0]})
    return checkpoint.latest(os.path.join(work, "vae")), checkpoint.latest(os.path.join(work, "diffusion"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae")
    ap.add_argument("--diffusion")
    ap.add_argument("--untrained", action="store_true")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--vertices", type=int, default=50_000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="drive-bench-")
    mesh = dense_mesh(work, args.vertices)
    vae, diffusion = untrained(work, args.tiny) if args.untrained else (args.vae, args.diffusion)
    video = os.path.join(work, "video")
    os.makedirs(video)
    for i in range(args.frames):
        Image.fromarray(np.full((256, 256, 3), 200 + i, np.uint8)).save(os.path.join(video, f"{i:03d}.png"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; torch {torch.__version__}; "
          f"threads {torch.get_num_threads()}; mesh {mesh}")
    t = time.perf_counter()
    res = drive(mesh, video, vae, diffusion, os.path.join(work, "driven.glb"), frames=args.frames)
    print(f"drive: {res['frames']} frames x {res['vertices']:,} vertices in {time.perf_counter() - t:.1f} s "
          f"(models: {'untrained ' + ('tiny' if args.tiny else 'paper-size') if args.untrained else vae})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
