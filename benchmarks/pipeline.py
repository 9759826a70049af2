"""Pipeline throughput and driver memory, through the real `driveanymesh run` command.

    python benchmarks/pipeline.py [--assets N] [--resolution R] [--keyframes T] [--samples S]

1. Clips per hour with 1 and with 2 Ray workers (the same N demo assets, fresh output each time),
   their ratio, time per stage (render, filters and encoding, the rest) from the audit's timings,
   and bytes per clip in the shards.
2. Driver peak memory (VmHWM) with 10 and with 1,000 assets queued: the run is stopped once its
   first assets are finished; with bounded work in flight the figure does not grow with the queue.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from curation.audit import AuditLog  # noqa: E402
from curation.sources import write_demo_assets  # noqa: E402

GOOD = ["creature_textured", "creature_plain", "blob_shapekeys", "rigid_spinner"]


def pipelines_file(work: str, listing: str, args) -> str:
    path = os.path.join(work, os.path.basename(listing).replace(".txt", ".yaml"))
    with open(path, "w") as f:
        f.write(f"bench:\n  source: {{kind: local, path: {listing}}}\n"
                f"  keyframes: {{count: {args.keyframes}}}\n"
                f"  render: {{resolution: {args.resolution}, samples: {args.samples}}}\n")
    return path


def listing_of(work: str, name: str, paths: list[str]) -> str:
    """Distinct uids for repeated assets: one symlink per entry."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    lines = []
    for i, p in enumerate(paths):
        link = os.path.join(d, f"a{i:05d}-{os.path.basename(p)}")
        if not os.path.exists(link):
            os.symlink(p, link)
        lines.append(link)
    path = os.path.join(work, f"{name}.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def cmd(pipelines: str, out: str, workers: int) -> list[str]:
    return [sys.executable, "-m", "driveanymesh", "--pipelines-file", pipelines, "run", "bench",
            "--out", out, "--workers", str(workers)]


def throughput(pipelines: str, out: str, workers: int) -> dict:
    t = time.perf_counter()
    subprocess.run(cmd(pipelines, out, workers), check=True, cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - t
    rows = AuditLog(out).rows()
    clips = [r for r in rows if r["stage"] == "filter"]
    stages = {}
    for r in rows:
        if r["stage"] == "asset":
            for k in ("render", "process", "total"):
                stages[k] = stages.get(k, 0.0) + (r.get("timings") or {}).get(k, 0.0)
    with open(os.path.join(out, "manifest.json")) as f:
        shards = json.load(f)["shards"]
    n = sum(s["samples"] for s in shards)
    return {"wall": wall, "clips": len(clips), "per_hour": len(clips) / wall * 3600, "stages": stages,
            "bytes_per_clip": sum(s["bytes"] for s in shards) / max(1, n)}


def peak_memory(pipelines: str, out: str, finished: int = 2) -> float:
    """Driver VmHWM (MiB) once `finished` assets are done; then the run is killed."""
    proc = subprocess.Popen(cmd(pipelines, out, 2), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    journal = os.path.join(out, "audit.jsonl")
    try:
        while True:
            if os.path.exists(journal) and sum('"stage": "asset"' in ln for ln in open(journal)) >= finished:
                break
            if proc.poll() is not None:
                sys.exit("the run ended before its first assets finished")
            time.sleep(0.2)
        with open(f"/proc/{proc.pid}/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=4, help="assets per throughput run")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--keyframes", type=int, default=30)
    ap.add_argument("--samples", type=int, default=16)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pipeline-bench-")
    demo = {e["name"]: e["path"] for e in write_demo_assets(os.path.join(work, "demo"))}
    print("command: ", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine: ", platform.processor() or platform.machine(), os.cpu_count(), "cores")
    print(f"settings: {args.assets} assets, {args.resolution}px, {args.keyframes} keyframes, {args.samples} samples")
    print("work:    ", work)

    assets = [demo[GOOD[i % len(GOOD)]] for i in range(args.assets)]
    pipes = pipelines_file(work, listing_of(work, "few", assets), args)
    res = {w: throughput(pipes, os.path.join(work, f"run-{w}w"), w) for w in (1, 2)}
    for w, r in res.items():
        s = r["stages"]
        print(f"{w} worker(s): {r['clips']} clips in {r['wall']:.1f} s = {r['per_hour']:.0f} clips/hour; "
              f"task seconds: render {s['render']:.1f}, filters+encoding {s['process']:.1f}, "
              f"other {s['total'] - s['render'] - s['process']:.1f}; "
              f"outside render {(s['total'] - s['render']) / s['total']:.1%} of task time; "
              f"{r['bytes_per_clip'] / 1e6:.2f} MB per clip in shards")
    print(f"2 workers / 1 worker: {res[2]['per_hour'] / res[1]['per_hour']:.2f}x (aim >= 1.8x)")

    small = pipelines_file(work, listing_of(work, "q10", [demo["rigid_spinner"]] * 10), args)
    large = pipelines_file(work, listing_of(work, "q1000", [demo["rigid_spinner"]] * 1000), args)
    m10 = peak_memory(small, os.path.join(work, "mem-10"))
    m1000 = peak_memory(large, os.path.join(work, "mem-1000"))
    print(f"driver peak memory: {m10:.0f} MiB with 10 queued, {m1000:.0f} MiB with 1,000 queued "
          f"({m1000 / m10:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
