"""Training and generation speed of the paper-size models (or tiny ones with --tiny).

    python benchmarks/train_step.py [--device cuda|cpu] [--vae-batch B] [--diffusion-batch B] [--steps S]

Prints, for the VAE and for the denoiser (latent-cache training, T' = 10 frames): samples per second,
achieved TFLOP/s (FLOPs of one step counted by torch's FlopCounterMode) and its fraction of the GPU's
bf16 dense peak, peak memory; then the time to generate one 30-frame clip: the Heun sampler's 18 steps
(35 denoiser evaluations) plus decoding 50,000 query points at every frame. Inputs are random tensors
of the real shapes: speed does not depend on their values.
"""
import argparse
import platform
import resource
import sys
import time
import os

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model.denoiser import Denoiser, DenoiserConfig  # noqa: E402
from model.edm import EDMConfig, EDMPrecond, edm_loss, heun_sample  # noqa: E402
from model.vae import VAE, VAEConfig  # noqa: E402

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


def measure(name, model, make_batch, loss_fn, batch_size, steps, warmup, device):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    batch = make_batch(batch_size)

    def step():
        with autocast:
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
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
    args = ap.parse_args()
    device = torch.device(args.device)
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


def train_figures(args, vae, precond, vcfg, dcfg, edm, device):
    N, M, S, T, D = 2048, vcfg.num_latents, vcfg.image_size, args.frames, dcfg.image_size
    measure("VAE", vae, lambda b: {"p1": torch.rand(b, N, 3, device=device) - 0.5,
                                   "pt": torch.rand(b, N, 3, device=device) - 0.5,
                                   "views": torch.randn(b, vcfg.views, vcfg.image_channels, S, S, device=device)},
            lambda m, x: m(x["p1"], x["views"], x["pt"])["loss"], args.vae_batch, args.steps, args.warmup, device)

    precond = EDMPrecond(Denoiser(dcfg), edm.sigma_data).to(device)
    T, D = args.frames, dcfg.image_size
    measure("denoiser", precond,
            lambda b: {"y": torch.randn(b, T, M, dcfg.latent_channels, device=device) * edm.sigma_data,
                       "p1": torch.rand(b, N, 3, device=device) - 0.5,
                       "video": torch.randn(b, T, 3, D, D, device=device)},
            lambda m, x: edm_loss(m, x["y"], edm, p1=x["p1"], video=x["video"]),
            args.diffusion_batch, args.steps, args.warmup, device)


def generation_figure(args, vae, precond, vcfg, dcfg, edm, device):
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
            condition = precond.net.condition(p1, video, M)  # once per clip, as train.objectives does
            z = heun_sample(precond, (1, Tg, M, dcfg.latent_channels), edm, condition=condition)
            sync(device)
            t1 = time.perf_counter()
            for t in range(Tg):
                vae.decode(z[:, t], queries, chunk_size=16_384)
        sync(device)
        times.append((t1 - t0, time.perf_counter() - t1))
    s, d = times[-1]
    print(f"generate {Tg} frames: sampling {s:.2f} s ({edm.num_steps} Heun steps) + decoding "
          f"{args.queries:,} points x {Tg} frames {d:.2f} s = {s + d:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
