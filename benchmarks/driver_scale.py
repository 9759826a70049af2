"""Driver scale: the real driver, journal, planner, shard-writing tasks and manifest, fed many assets
whose render step is replaced (in this benchmark only) by a task that stages a stored sample of a
realistic size and returns realistic audit rows, without Blender.

    python benchmarks/driver_scale.py [--assets 1000 40000] [--scale 0.001] [--workers 8]

For each asset count, in a fresh process: one run over a fresh output, then the same command again
in a new process (a resume over the whole journal, nothing left to do). Prints, per count: accepted
clips per second the driver sustained (over the middle 80% of accepted clips, by the time the
journal recorded each: Ray's worker start-up and the last shards are left out), the driver process's
peak RSS, resume start-up (from the call to the first submit: lock, journal read, manifest,
reconcile, Ray start), the largest shard against `shards.max_bytes`, and the number of shards.

Sample sizes are drawn log-uniformly between 1 and 40 MB (the range of `verts.npy` plus images
measured on demo and Objaverse clips, ~36 MB for 100k vertices) and multiplied by `--scale`, with
`shards.max_bytes` (1 GB) multiplied by the same factor: the driver never touches sample bytes
(render tasks stage them, shard tasks on the nodes pack them), so its bookkeeping (samples per
shard, shards, entries) is the same as at full size, while this machine's disk does not have to
write 400 GB. `--scale 1` on a machine with the disk for it.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ACCEPT_SHARE = 0.8  # the rest are rejections (no sample staged)
SAMPLE_MB = (1.0, 40.0)

# An accepted clip's filter values as the real filters record them (a demo clip), for realistic rows.
VALUES = {"scene_components": 1, "scene_largest_part": 1.0, "scene_second_part": 0.0, "n_vertices": 457,
          "n_faces": 796, "extent_first": [0.21003, 0.38088, 1.0], "min_second_extent": 0.24839,
          "boundary_edge_fraction": 0.0, "bounds_max_abs": 0.52423, "bounds_limit": 0.925,
          "bounds_frames_outside": 0, "bounds_max_fraction_outside": 0.0, "bounds_border_alpha_pixels": [0, 0, 0, 0],
          "ssim_min_per_view": [0.9648, 0.9619, 0.97004, 0.97407],
          "ssim_change_per_view": [0.0352, 0.0381, 0.02996, 0.02593], "ssim_change": 0.0381,
          "mean_displacement_max": 0.21993, "max_jump_per_frame": 0.02602, "max_jump_keyframe": 6,
          "max_jump_spacing": 2.0, "jump_ratio_to_next": 1.004, "verts_finite": True}
TIMINGS = {"load": 0.126, "thumbnail": 0.077, "filters": 0.956, "subdivision": 0.05, "encoding": 0.002,
           "staging": 0.015}


def stored_sample_task(task, pipe, out):
    """Stands in for `process_asset` (benchmark only): the rows and the staged sample of one asset."""
    import random

    from curation import audit
    from curation.driver import _node, asset_row
    from curation.split import split_of
    from dataset.shard_writer import stage_sample

    rng = random.Random(task.uid)
    key = f"{task.uid}_0"
    split = split_of(task.uid, pipe.split.test_fraction)
    label = "textured" if rng.random() < 0.8 else "textureless"
    if rng.random() < ACCEPT_SHARE:
        nbytes = int(SAMPLE_MB[0] * (SAMPLE_MB[1] / SAMPLE_MB[0]) ** rng.random() * 1e6 * task.info["scale"])
        sample = {"__key__": key, "meta.json": json.dumps({"key": key, "uid": task.uid}).encode(),
                  "verts.npy": bytes(nbytes)}
        row = audit.row(task.uid, "filter", "accepted", values={**VALUES, "staged_bytes": 0}, animation="Take 001",
                        animation_index=0, label=label, split=split, key=key, timings=dict(TIMINGS))
        row["values"]["staged_bytes"] = stage_sample(out, label, split, sample)
    else:
        row = audit.row(task.uid, "filter", "rejected", rule="ssim_motion", reasons=["ssim_motion: static"],
                        values=dict(VALUES), animation="Take 001", animation_index=0, label=label, split=split,
                        key=key, timings=dict(TIMINGS))
    rows = [row, asset_row(task.uid, [row], {"clips": 1, "accepted": int(row["status"] == "accepted")},
                           {"render": 60.0, "total": 61.2})]
    node = _node()
    return [{**r, **node} for r in rows]


def child(args) -> None:
    """One asset count, one phase ("first": a fresh run; "resume": the same command again, in a new
    process as a user would); prints one JSON line."""
    from curation import driver
    from curation.pipeline_config import load_pipeline

    n, scale = args.child, args.scale
    driver.process_asset = stored_sample_task  # the render step, replaced (this benchmark only)
    driver.tasks_for = lambda pipe, out: ([driver.AssetTask(f"asset{i:06d}", "bench", path="-", info={"scale": scale})
                                           for i in range(n)], [])
    max_bytes = int(1e9 * scale)
    pipe = load_pipeline("demo", overrides=[f"shards.max_bytes={max_bytes}", f"ray.max_in_flight={args.in_flight}"])
    out = os.path.join(args.work, f"run-{n}")
    samples, stop = [], threading.Event()

    def sample_rss():  # (seconds since the call, resident MB) every 0.2 s: which phase holds the peak
        with open("/proc/self/status") as f:
            while not stop.wait(0.2):
                f.seek(0)
                samples.append((time.perf_counter() - t, int(f.read().split("VmRSS:")[1].split()[0]) / 1024))

    t = time.perf_counter()
    threading.Thread(target=sample_rss, daemon=True).start()
    result = driver.run(pipe, out, workers=args.workers)
    wall = time.perf_counter() - t
    stop.set()
    timings = json.load(open(os.path.join(out, "run.json")))["driver_timings"]
    loop_end = timings["startup"] + timings["loop"]
    res = {"phase": args.phase, "assets": n, "accepted": result["counts"]["accepted"], "wall_s": wall,
           "timings": timings, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "loop_rss_mb": max((m for s, m in samples if s <= loop_end), default=0),
           "end_rss_mb": max((m for s, m in samples if s > loop_end), default=0), "ok": result["check"]["ok"]}
    if args.phase == "first":
        import pyarrow.parquet as pq

        table = pq.read_table(os.path.join(out, "audit.parquet"), columns=["stage", "status", "recorded_at"])
        at = sorted(t for s, st, t in zip(*(table.column(c).to_pylist() for c in ("stage", "status", "recorded_at")))
                    if s == "filter" and st == "accepted")
        lo, hi = at[len(at) // 10], at[len(at) * 9 // 10]  # the middle 80%: no worker start-up, no tail
        res["clips_per_s"] = (len(at) * 8 // 10) / (hi - lo)
        manifest = json.load(open(os.path.join(out, "manifest.json")))
        res.update(largest_shard=max(s["bytes"] for s in manifest["shards"]), max_bytes=max_bytes,
                   shards=len(manifest["shards"]))
    print(json.dumps(res), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, nargs="+", default=[1000, 40000])
    ap.add_argument("--scale", type=float, default=0.001, help="sample and shard bytes x this (see above)")
    ap.add_argument("--workers", type=int, default=8, help="embedded Ray CPUs (the stand-in tasks are light)")
    ap.add_argument("--in-flight", type=int, default=256, help="ray.max_in_flight: tasks queued at once")
    ap.add_argument("--keep", help="write the outputs here and keep them (default: a temporary folder)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"sizes x{args.scale:g}, {args.workers} Ray CPUs, {args.in_flight} tasks in flight", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="dam-driver-scale-") as tmp:
        work = args.keep or tmp
        for n in args.assets:
            r = {}
            for phase in ("first", "resume"):
                proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--phase", phase, "--work", work,
                                       "--scale", str(args.scale), "--workers", str(args.workers),
                                       "--in-flight", str(args.in_flight)], stdout=subprocess.PIPE, text=True)
                if proc.returncode:
                    sys.exit(f"the {phase} run with {n} assets failed (exit {proc.returncode})")
                r[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            f, s = r["first"], r["resume"]
            print(f"{n:>6} assets: {f['accepted']} accepted; {f['clips_per_s']:.1f} accepted clips/s sustained "
                  f"(middle 80%); run {f['wall_s']:.0f} s (start-up {f['timings']['startup']:.1f} s, of it Ray "
                  f"{f['timings']['ray_connect']:.1f} s; end: audit table, report, check "
                  f"{f['timings']['audit_and_report']:.1f} s); driver peak RSS {f['peak_rss_mb']:.0f} MB (while "
                  f"submitting {f['loop_rss_mb']:.0f}, at the end {f['end_rss_mb']:.0f}); "
                  f"{f['shards']} shards, largest {f['largest_shard']:,} B (max_bytes {f['max_bytes']:,}); "
                  f"check {'ok' if f['ok'] else 'FAILED'}", flush=True)
            print(f"{'':>6} resume over the {n}-asset journal: start-up {s['timings']['startup']:.1f} s (of it Ray "
                  f"{s['timings']['ray_connect']:.1f} s), whole run {s['wall_s']:.1f} s, peak RSS "
                  f"{s['peak_rss_mb']:.0f} MB; check {'ok' if s['ok'] else 'FAILED'}", flush=True)
    if len(results) > 1:
        a, b = results[0]["first"], results[-1]["first"]
        print(f"driver peak RSS, {b['assets']} / {a['assets']} assets: {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
