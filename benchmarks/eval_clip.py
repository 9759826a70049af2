"""Seconds per clip of `driveanymesh eval` without rendering (Table 1's Chamfer and L2, ActionBench's
CD-3D, CD-4D and CD-M, the following figures), for every kind: the VAE's reconstruction and the two
controls (first frame held, time-mean pose).

    python benchmarks/eval_clip.py --shards SHARD [SHARD ...] [--vae CKPT] [--clips 2] [--before CHECKOUT]
    python benchmarks/eval_clip.py --shards SHARD [SHARD ...] --clips 4 --ray-nodes 2

Without --vae, a `vae-learn`-sized VAE with random weights (written in the training format, so the
timed path is the real one; its predictions are as costly to score as a trained model's). The
evaluation's own defaults: 10,000 Chamfer points and 100,000 ActionBench points per frame (as many
as a clip's dense points allow). With --before the same clips are evaluated by an earlier
checkout's code too, alternating the two twice in one run, with the ratio. With --ray-nodes N, clips
per hour in one process and on a local Ray cluster of N nodes of one CPU each (`ray start` on
127.0.0.1, token authentication), one after the other in the same run.
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
    res = evaluate(args.shards, args.vae, out, max_clips=args.clips, device="cpu", ray_address=args.ray_address,
                   workers=args.workers)
    seconds = time.perf_counter() - t
    print(json.dumps({"s_per_clip": seconds / res["clips"], "clips": res["clips"]}))
    return 0


def on_local_cluster(nodes: int, argv: list[str]) -> float:
    """Clips per hour of the child evaluation on a fresh local cluster of `nodes` one-CPU nodes."""
    import shutil
    import signal
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    common = ["--block", "--disable-usage-stats", "--num-cpus", "1", "--node-ip-address", "127.0.0.1"]
    started = []
    try:
        for i in range(nodes):
            where = ["--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false"] if i == 0 \
                else ["--address", f"127.0.0.1:{port}"]
            started.append(subprocess.Popen([ray, "start", *common, *where], env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--code", ROOT, "--ray-address",
                               f"127.0.0.1:{port}", "--workers", str(nodes)], capture_output=True, text=True, env=env)
    finally:
        for node in reversed(started):
            os.killpg(node.pid, signal.SIGTERM)
            node.wait()
        shutil.rmtree(temp, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"the evaluation on Ray failed:\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return 3600 / figures["s_per_clip"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", nargs="+", required=True)
    ap.add_argument("--vae")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--before", help="an earlier checkout, evaluated in the same run")
    ap.add_argument("--ray-nodes", type=int, help="also time a local Ray cluster of this many one-CPU nodes")
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--ray-address", help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
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
    if args.ray_nodes:
        alone = 3600 / best["this checkout"]["s_per_clip"]
        clustered = on_local_cluster(args.ray_nodes, argv)
        print(f"one process: {alone:.1f} clips/hour; Ray, {args.ray_nodes} nodes of one CPU: {clustered:.1f} "
              f"clips/hour ({clustered / alone:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
