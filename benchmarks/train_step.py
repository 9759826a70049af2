"""Training and generation speed of the paper-size models (or tiny ones with --tiny).

    python benchmarks/train_step.py [--device cuda|cpu] [--vae-batch B] [--diffusion-batch B] [--steps S]
    python benchmarks/train_step.py --trainer [--before CHECKOUT] [--tiny] [--steps S]

Prints, for the VAE and for the denoiser (latent-cache training, T' = 10 frames): samples per second,
achieved TFLOP/s (FLOPs of one step counted by torch's FlopCounterMode) and its fraction of the GPU's
bf16 dense peak, peak memory; then the time to generate one 30-frame clip: the Heun sampler's 18 steps
(35 denoiser evaluations) plus decoding 50,000 query points at every frame. Inputs are random tensors
of the real shapes: speed does not depend on their values.

--trainer times `Trainer.train_step` itself (the objective, optimizer, clipping, EMA) for the VAE and
for diffusion with the latents encoded in the step and from a latent cache; with --before it does so
for an earlier checkout's code too, alternating the two twice in one run, and prints each figure's
ratio (after / before). Only the Trainer's interface is used, which both checkouts share.
"""
import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --code ROOT (the --before child) imports that checkout's packages instead of this one's.
CODE = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv else ROOT
sys.path.insert(0, CODE)

BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, no sparsity


def peak_tflops(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(name, model, make_batch, loss_fn, batch_size, steps, warmup, device, compile_model=False):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batch = make_batch(batch_size)
    run = torch.compile(model) if compile_model else model  # warm-up steps include the compilation
    if compile_model:
        name += " (compiled)"

    def step():
        with autocast:
            loss = loss_fn(run, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    with FlopCounterMode(display=False) as counter:  # counted on the eager module: the same arithmetic
        with autocast:
            loss = loss_fn(model, batch)
        loss.backward()
        opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - t) / steps
    tflops = flops / seconds / 1e12
    peak = peak_tflops(device)
    share = f" = {tflops / peak:.1%} of bf16 peak ({peak:.0f})" if peak else ""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    print(f"{name}: {params:.1f}M trained parameters, batch {batch_size}: {batch_size / seconds:.2f} samples/s, "
          f"{seconds * 1e3:.0f} ms/step, {flops / 1e12:.2f} TFLOP/step, {tflops:.1f} TFLOP/s{share}, "
          f"peak memory {peak_memory_gib(device):.1f} GiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainer", action="store_true", help="time Trainer.train_step (see above)")
    ap.add_argument("--before", help="with --trainer: an earlier checkout, timed in the same run")
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--diffusion-batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=10, help="T' frames per diffusion sample")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--generate-frames", type=int, default=30)
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--skip-training", action="store_true", help="only the generation figure")
    ap.add_argument("--tiny", action="store_true", help="tiny configurations (a quick check of the script)")
    ap.add_argument("--compile", action="store_true", help="each training figure also with torch.compile")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.trainer:
        return compare_trainers(args) if args.code is None else trainer_child(args, device)
    from model.denoiser import Denoiser, DenoiserConfig
    from model.edm import EDMConfig, EDMPrecond
    from model.vae import VAE, VAEConfig

    torch.manual_seed(0)
    vcfg, dcfg = (VAEConfig.tiny(), DenoiserConfig.tiny()) if args.tiny else (VAEConfig(), DenoiserConfig())
    edm = EDMConfig()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    vae = VAE(vcfg).to(device)
    precond = EDMPrecond(Denoiser(dcfg), edm.sigma_data).to(device)
    if not args.skip_training:
        train_figures(args, vae, precond, vcfg, dcfg, edm, device)
    generation_figure(args, vae, precond, vcfg, dcfg, edm, device)
    return 0


def random_batches(vcfg, dcfg, batch: int, frames: int, device) -> dict:
    """Random tensors of the loaders' shapes: a VAE batch, and diffusion batches with views (latents
    encoded in the step) and with cached latents."""
    N, M, S, D = 2048, vcfg.num_latents, vcfg.image_size, dcfg.image_size
    from model.anchors import anchor_points

    p1 = torch.rand(batch, N, 3, device=device) - 0.5
    anchors = anchor_points(p1, M)  # as the loader's workers hand them to the step
    video = torch.randn(batch, frames, 3, D, D, device=device)
    return {"vae": {"p1": p1, "anchors": anchors, "pt": torch.rand(batch, N, 3, device=device) - 0.5,
                    "views": torch.randn(batch, vcfg.views, vcfg.image_channels, S, S, device=device)},
            "encoded in the step": {"p1": p1, "video": video, "views": torch.randn(
                batch, frames, vcfg.views, vcfg.image_channels, S, S, device=device)},
            "latent cache": {"p1": p1, "video": video, "anchors": anchors,
                             "latents": torch.randn(batch, frames, M, vcfg.latent_channels, device=device)}}


def train_figures(args, vae, precond, vcfg, dcfg, edm, device):
    from model.edm import edm_loss
    from train.objectives import VAEObjective

    batches = random_batches(vcfg, dcfg, max(args.vae_batch, args.diffusion_batch), args.frames, device)
    vae_batch = {k: v[:args.vae_batch] for k, v in batches["vae"].items()}
    cached = {k: v[:args.diffusion_batch] for k, v in batches["latent cache"].items()}
    for compile_model in ([False, True] if args.compile else [False]):
        measure("VAE", VAEObjective(vae), lambda b: vae_batch, lambda m, x: m(x)["loss"], args.vae_batch,
                args.steps, args.warmup, device, compile_model)
        measure("denoiser", precond, lambda b: cached,
                lambda m, x: edm_loss(m, x["latents"] * edm.sigma_data, edm, condition=precond.net.condition(
                    x["p1"], x["video"], x["anchors"])),
                args.diffusion_batch, args.steps, args.warmup, device, compile_model)


def trainer_child(args, device) -> int:
    """Times Trainer.train_step of the code under --code; prints one JSON line of ms per step."""
    from train.config import load_train_config
    from train.trainer import Trainer

    size = "tiny" if args.tiny else "paper"
    out = tempfile.mkdtemp(prefix="train-step-")
    figures = {}

    def timed(trainer, batch) -> float:
        for _ in range(args.warmup):
            trainer.train_step(batch)
        sync(device)
        t = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(batch)
        sync(device)
        return (time.perf_counter() - t) / args.steps * 1e3

    torch.manual_seed(0)
    vae_cfg = load_train_config(f"vae-{size}")
    vae_cfg.batch_size, vae_cfg.num_workers = args.vae_batch, 0
    vae_trainer = Trainer(vae_cfg, [], os.path.join(out, "vae"))
    diff_cfg = load_train_config(f"diffusion-{size}")
    batches = random_batches(vae_trainer.objective.vae.cfg, diff_cfg.denoiser, args.diffusion_batch,
                             diff_cfg.data.frames_per_clip, device)
    vae_batch = {k: v[:args.vae_batch] for k, v in random_batches(
        vae_cfg.vae, diff_cfg.denoiser, args.vae_batch, 1, device)["vae"].items()}
    figures["VAE"] = timed(vae_trainer, vae_batch)
    checkpoint = vae_trainer.save()
    vae_trainer.close()
    for kind in ("encoded in the step", "latent cache"):
        trainer = Trainer(diff_cfg, [], os.path.join(out, kind), vae_checkpoint=checkpoint)
        figures[f"diffusion, {kind}"] = timed(trainer, batches[kind])
        trainer.close()
    print(json.dumps(figures), flush=True)
    return 0


def compare_trainers(args) -> int:
    from checkouts import alternate

    argv = [a for a in sys.argv[1:] if a not in ("--before", args.before)]
    print(f"Trainer.train_step, {'tiny' if args.tiny else 'paper-size'} configurations, VAE batch "
          f"{args.vae_batch}, diffusion batch {args.diffusion_batch}, {args.steps} timed steps after "
          f"{args.warmup}; {'before and ' if args.before else ''}this checkout", flush=True)
    best = alternate(__file__, argv, args.before, ROOT, min, lambda v: f"{v:.0f} ms")
    for key in best["this checkout"]:
        line = f"{key}: {best['this checkout'][key]:.0f} ms/step"
        if args.before:
            line += f" (before {best['before'][key]:.0f} ms, ratio {best['this checkout'][key] / best['before'][key]:.3f})"
        print(line)
    return 0


def generation_figure(args, vae, precond, vcfg, dcfg, edm, device):
    from model.anchors import anchor_points
    from model.edm import heun_sample

    N, M, D = 2048, vcfg.num_latents, dcfg.image_size
    # One clip: sampling all frames jointly, then decoding the mesh's query points frame by frame.
    precond.eval()
    vae.eval()
    Tg = args.generate_frames
    p1 = torch.rand(1, N, 3, device=device) - 0.5
    video = torch.randn(1, Tg, 3, D, D, device=device)
    queries = torch.rand(1, args.queries, 3, device=device) - 0.5
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    times = []
    for _ in range(2):  # the first run includes kernel selection
        sync(device)
        t0 = time.perf_counter()
        with autocast, torch.no_grad():
            anchors = anchor_points(p1, M)
            condition = precond.net.condition(p1, video, anchors)  # once per clip, as the sampler does
            z = heun_sample(precond, (1, Tg, M, dcfg.latent_channels), edm, condition=condition)
            sync(device)
            t1 = time.perf_counter()
            for t in range(Tg):
                vae.decode(z[:, t], queries, chunk_size=16_384, anchors=anchors)
        sync(device)
        times.append((t1 - t0, time.perf_counter() - t1))
    s, d = times[-1]
    print(f"generate {Tg} frames: sampling {s:.2f} s ({edm.num_steps} Heun steps) + decoding "
          f"{args.queries:,} points x {Tg} frames {d:.2f} s = {s + d:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
