"""Pipeline throughput and driver memory, through the real `driveanymesh run` command.

    python benchmarks/pipeline.py [--assets N] [--resolution R] [--keyframes T] [--samples S]

1. Clips per hour with 1 and with 2 Ray workers (the same N demo assets, fresh output each time),
   their ratio, time per stage (download, render, subdivision, filters, encoding, writing) from the
   audit's timings and the driver's (run.json), bytes per clip in the shards, and the CPU seconds
   each kind of process used (Blender jobs, Ray workers, Ray's own daemons, the driver), sampled
   from /proc: where the second core's time goes when two tasks run.
2. Driver peak memory (VmHWM) with 10 and with 1,000 assets queued: the run is stopped once its
   first assets are finished; with bounded work in flight the figure does not grow with the queue.

    python benchmarks/pipeline.py --storage [--assets N] [--before CHECKOUT] ...

3. Output storage, in one run of this script: the same assets with `--out` a local folder and an S3
   bucket on a loopback endpoint (moto's server), 2 workers each: clips per hour, and the share of a
   clip's time spent writing outputs (staging, thumbnails, shard tasks, manifest commits, audit
   table and report). Also the bytes the driver process itself read and wrote (/proc/PID/io rchar +
   wchar, sockets included) per accepted clip, against the shard bytes per clip; with `--before
   CHECKOUT` (a checkout of an earlier version, e.g. a `git worktree`), the same figure for it.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from curation.audit import AuditLog  # noqa: E402
from curation.sources import write_demo_assets  # noqa: E402
from dataset.storage import Store  # noqa: E402

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


def driver_io(pid: int) -> tuple[int, int] | None:
    """(bytes the process read and wrote through system calls, files and sockets alike; bytes it
    sent to the storage layer, i.e. written to local files)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            io = dict(ln.split(": ") for ln in f.read().splitlines())
        return int(io["rchar"]) + int(io["wchar"]), int(io["write_bytes"])
    except OSError:
        return None


TICK = os.sysconf("SC_CLK_TCK")


def process_kind(pid: int, driver: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    if pid == driver:
        return "driver"
    if "render.blender_job" in argv:
        return "blender jobs"
    if argv.startswith("ray::"):
        return "ray workers"
    if "ray" in argv and ("raylet" in argv or "gcs_server" in argv or "/ray/" in argv):
        return "ray daemons"
    return None


class CpuSampler(threading.Thread):
    """CPU seconds (utime + stime) per kind of process, from /proc every 0.25 s while a run goes on."""

    def __init__(self, driver: int):
        super().__init__(daemon=True)
        self.driver, self.last, self.kind, self.stop = driver, {}, {}, threading.Event()
        self.driver_io = (0, 0)  # the last reading before the driver exits

    def run(self):
        while not self.stop.is_set():
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                if pid not in self.kind:
                    self.kind[pid] = process_kind(pid, self.driver)
                if self.kind[pid] is None:
                    continue
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    self.last[pid] = (int(fields[11]) + int(fields[12])) / TICK
                except (OSError, IndexError):
                    pass
            self.driver_io = driver_io(self.driver) or self.driver_io
            time.sleep(0.25)

    def totals(self) -> dict:
        out: dict[str, float] = {}
        for pid, secs in self.last.items():
            out[self.kind[pid]] = out.get(self.kind[pid], 0.0) + secs
        return out


STAGES = ["download", "render", "subdivision", "filters", "encoding", "writing"]


def throughput(pipelines: str, out: str, workers: int, code: str = ROOT, env=None) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd(pipelines, out, workers), cwd=code, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    sampler = CpuSampler(proc.pid)
    sampler.start()
    if proc.wait() != 0:
        sys.exit(f"the run failed: see {out}")
    wall = time.perf_counter() - t
    sampler.stop.set()
    sampler.join()
    if code != ROOT:  # an earlier version's output: only its manifest is read
        with open(os.path.join(out, "manifest.json")) as f:
            shards = json.load(f)["shards"]
        n = sum(s["samples"] for s in shards)
        return {"wall": wall, "accepted": n, "driver_io": sampler.driver_io,
                "bytes_per_clip": sum(s["bytes"] for s in shards) / max(1, n)}
    store = Store(out)
    rows = AuditLog(store).rows()
    clips = [r for r in rows if r["stage"] == "filter"]
    tim: dict[str, float] = {}
    for r in rows:
        if r["stage"] == "asset":
            for k, v in (r.get("timings") or {}).items():
                tim[k] = tim.get(k, 0.0) + v
    driver = json.loads(store.read("run.json"))["driver_timings"]
    stages = {"download": tim.get("download", 0.0), "render": tim.get("render", 0.0),
              "subdivision": tim.get("process.subdivision", 0.0),
              "filters": sum(tim.get(f"process.{k}", 0.0) for k in ("load", "thumbnail", "filters")),
              "encoding": tim.get("process.encoding", 0.0),
              "writing": (tim.get("process.staging", 0.0) + driver["pack_tasks"] + driver["pack_commit"]
                          + driver["audit_and_report"]),
              "task total": tim.get("total", 0.0),
              "pure Cycles render": tim.get("render.render", 0.0)}
    storage = stages["writing"] + tim.get("process.thumbnail", 0.0)  # every write to the output store
    shards = json.loads(store.read("manifest.json"))["shards"]
    n = sum(s["samples"] for s in shards)
    return {"wall": wall, "clips": len(clips), "per_hour": len(clips) / wall * 3600, "stages": stages,
            "cpu": sampler.totals(), "bytes_per_clip": sum(s["bytes"] for s in shards) / max(1, n),
            "accepted": n, "driver_io": sampler.driver_io,
            "storage_share": storage / (tim.get("total", 0.0) + storage - tim.get("process.staging", 0.0)
                                        - tim.get("process.thumbnail", 0.0))}


def peak_memory(pipelines: str, out: str, finished: int = 2) -> float:
    """Driver VmHWM (MiB) once `finished` assets are done; then the run is killed."""
    proc = subprocess.Popen(cmd(pipelines, out, 2), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            if os.path.isdir(out) and sum(r["stage"] == "asset" for r in AuditLog(out).rows()) >= finished:
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
    ap.add_argument("--storage", action="store_true", help="compare --out local and s3:// (loopback) instead")
    ap.add_argument("--before", help="with --storage: an earlier checkout, for the driver's bytes per clip")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pipeline-bench-")
    demo = {e["name"]: e["path"] for e in write_demo_assets(os.path.join(work, "demo"))}
    print("command: ", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("machine: ", platform.processor() or platform.machine(), os.cpu_count(), "cores")
    print(f"settings: {args.assets} assets, {args.resolution}px, {args.keyframes} keyframes, {args.samples} samples")
    print("work:    ", work)

    assets = [demo[GOOD[i % len(GOOD)]] for i in range(args.assets)]
    pipes = pipelines_file(work, listing_of(work, "few", assets), args)
    if args.storage:
        return compare_storage(pipes, work, args.before)
    res = {w: throughput(pipes, os.path.join(work, f"run-{w}w"), w) for w in (1, 2)}
    for w, r in res.items():
        s = r["stages"]
        outside = sum(s[k] for k in STAGES if k != "render")
        print(f"{w} worker(s): {r['clips']} clips in {r['wall']:.1f} s = {r['per_hour']:.0f} clips/hour; "
              f"{r['bytes_per_clip'] / 1e6:.2f} MB per clip in shards")
        print("  seconds per clip: " + ", ".join(f"{k} {s[k] / r['clips']:.2f}" for k in STAGES)
              + f" (of render: pure Cycles {s['pure Cycles render'] / r['clips']:.2f})")
        print(f"  outside Blender: {outside / (outside + s['render']):.1%} of a clip's time")
        print("  CPU seconds by process: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["cpu"].items()))
              + f"; machine total {r['wall'] * os.cpu_count():.1f}")
    print(f"2 workers / 1 worker: {res[2]['per_hour'] / res[1]['per_hour']:.2f}x (aim >= 1.8x)")

    small = pipelines_file(work, listing_of(work, "q10", [demo["rigid_spinner"]] * 10), args)
    large = pipelines_file(work, listing_of(work, "q1000", [demo["rigid_spinner"]] * 1000), args)
    m10 = peak_memory(small, os.path.join(work, "mem-10"))
    m1000 = peak_memory(large, os.path.join(work, "mem-1000"))
    print(f"driver peak memory: {m10:.0f} MiB with 10 queued, {m1000:.0f} MiB with 1,000 queued "
          f"({m1000 / m10:.2f}x)")
    return 0


def compare_storage(pipes: str, work: str, before: str | None) -> int:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    boto3.client("s3").create_bucket(Bucket="bench")
    runs = {"local": throughput(pipes, os.path.join(work, "out-local"), 2)}
    cpu = time.process_time()
    runs["s3"] = throughput(pipes, "s3://bench/out", 2, env=env)
    runs["s3"]["endpoint_cpu"] = time.process_time() - cpu  # the S3 server shares this machine's 2 cores
    if before:
        runs["before (local)"] = throughput(pipes, os.path.join(work, "out-before"), 2, code=before)
    server.stop()
    for name, r in runs.items():
        syscalls, files = (v / max(1, r["accepted"]) / 1e6 for v in r["driver_io"])
        line = (f"{name:>15}: driver read+wrote {syscalls:.2f} MB per accepted clip through system calls, "
                f"wrote {files:.2f} MB to local files ({r['bytes_per_clip'] / 1e6:.2f} MB per clip in shards)")
        if "per_hour" in r:
            st = r["stages"]
            line = (f"{name:>15}: {r['clips']} clips in {r['wall']:.1f} s = {r['per_hour']:.0f} clips/hour; "
                    f"storage {r['storage_share']:.1%} of a clip's time\n{'':>17}seconds per clip: "
                    + ", ".join(f"{k} {st[k] / r['clips']:.2f}" for k in STAGES) + f"\n{'':>17}CPU seconds: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["cpu"].items())) + f"\n{'':>17}" + line[17:])
        print(line)
    print(f"s3 / local clips per hour: {runs['s3']['per_hour'] / runs['local']['per_hour']:.3f} (aim >= 0.95); "
          f"the loopback S3 server itself used {runs['s3']['endpoint_cpu']:.1f} CPU-s of the run's "
          f"{runs['s3']['wall'] * os.cpu_count():.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
