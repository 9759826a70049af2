"""The paper's VAE ablations, each configuration trained for the same wall-clock budget, then
evaluated on held-out shards (VAE reconstruction: Chamfer and per-point L2 per frame).

    python benchmarks/ablations.py --table loss|latent --shards TRAIN... --val-shards TEST... \\
        [--budget-s 600] [--tiny] [--out DIR]

--table loss: MSE, DIS, MSE + 0.1 DIS (Table 2: vae-loss-mse, vae-loss-dis, vae-paper).
--table latent: C in {128, 512} x C0 in {8, 16, 32} (Table 3: vae-cC-c0-K, vae-paper).
--tiny keeps each row's ablated setting on the tiny model of `vae-tiny` (C 128 / 512 become 32 / 128),
so the script runs on a CPU in minutes; the paper-size rows need GPUs.
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from train.config import load_train_config  # noqa: E402
from train.evaluate import evaluate  # noqa: E402
from train.trainer import Trainer  # noqa: E402

ROWS = {
    "loss": [("MSE", "vae-loss-mse"), ("DIS", "vae-loss-dis"), ("MSE+DIS", "vae-paper")],
    "latent": [(f"C={c}, C0={k}", "vae-paper" if (c, k) == (512, 32) else f"vae-c{c}-c0-{k}")
               for c in (128, 512) for k in (8, 16, 32)],
}
TINY_WIDTH = {128: 32, 512: 128}


def row_config(name: str, tiny: bool):
    cfg = load_train_config(name)
    if tiny:
        base = load_train_config("vae-tiny")
        base.vae = dataclasses.replace(base.vae, latent_channels=cfg.vae.latent_channels,
                                       width=TINY_WIDTH.get(cfg.vae.width, base.vae.width))
        base.vae_loss = cfg.vae_loss
        base.name = f"{name} (tiny)"
        cfg = base
    cfg.max_steps = 10**9  # the time budget ends each run
    cfg.log_every, cfg.checkpoint_every, cfg.val_every = 200, 10**9, 10**9
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", choices=sorted(ROWS), required=True)
    ap.add_argument("--shards", nargs="+", required=True)
    ap.add_argument("--val-shards", nargs="+", required=True)
    ap.add_argument("--budget-s", type=float, default=600.0, help="training seconds per row")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix=f"ablation-{args.table}-")
    print(f"table {args.table}: {len(ROWS[args.table])} rows x {args.budget_s:g} s of training; outputs in {out}")
    lines = ["| row | config | steps | Geo. CD | per-point L2 |", "| --- | --- | --- | --- | --- |"]
    for label, name in ROWS[args.table]:
        cfg = row_config(name, args.tiny)
        run = os.path.join(out, name)
        trainer = Trainer(cfg, args.shards, run)
        t = time.perf_counter()
        trainer.fit(time_budget_s=args.budget_s)
        steps, elapsed = trainer.step, time.perf_counter() - t
        ckpt = trainer.save()
        trainer.close()
        res = evaluate(args.val_shards, ckpt, os.path.join(run, "eval"))
        v = res["table"]["reconstruction"]
        lines.append(f"| {label} | {cfg.name} | {steps} ({elapsed:.0f} s) | {v['chamfer']:.5f} | {v['l2']:.5f} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
