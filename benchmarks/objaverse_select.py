"""Objaverse 1.0 selection and fetch at full size, on a synthetic mirror in the objaverse package's layout.

    python benchmarks/objaverse_select.py [--mirror DIR] [--uids 800000] [--files 160] [--fetches 200]

The mirror (DIR/.objaverse/hf-objaverse-v1/: object-paths.json.gz, metadata/000-000 ... 000-159.json.gz,
and --fetches + 1 tiny GLBs) is written once and reused while its parameters match (DIR/bench-mirror.json;
default DIR: $TMPDIR/driveanymesh-objaverse-bench). Records have the real schema (tests/objaverse_mirror
.annotation) plus what real ones carry besides (six thumbnails, avatar images, a description, four
archives): ~5% animated, the five Objaverse licences, 0-2 of Sketchfab's categories, 0-12 tags drawn
from a pool holding the scene/scan tags. object-paths lists the uids in random order, not grouped by
metadata file.

Then, each in a fresh process with HOME=DIR (the package fixes its cache from HOME at import):
  select   curation.sources.objaverse.select(ObjaverseSettings()): wall time, and peak memory from
           resource.getrusage(RUSAGE_CHILDREN).ru_maxrss once it has exited. Aims: < 5 min, < 4 GB.
  fetch    a worker: the first fetch (parses object-paths), then --fetches fetches of other cached
           GLBs, each timed: the per-fetch overhead once warm. Aim: < 50 ms. For comparison, the
           package's objaverse.load_objects([uid]) on a cached GLB (what fetch called before).
"""
import argparse
import gzip
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tests.objaverse_mirror import annotation, make_uid, tiny_glb  # noqa: E402

LICENSES = (["by"] * 50 + ["by-nc"] * 20 + ["by-sa"] * 10 + ["by-nc-sa"] * 12 + ["cc0"] * 8)
CATEGORIES = ("Animals & pets", "Architecture", "Art & abstract", "Cars & vehicles", "Characters & creatures",
              "Cultural heritage & history", "Electronics & gadgets", "Fashion & style", "Food & drink",
              "Furniture & home", "Music", "Nature & plants", "News & politics", "People", "Places & travel",
              "Science & technology", "Sports & fitness", "Weapons & military")
TAGS = tuple(f"tag{i}" for i in range(300)) + (
    "scene", "environment", "room", "interior", "terrain", "landscape", "city", "scan", "3dscan",
    "photogrammetry", "lidar", "character", "animal", "robot", "rigged", "animated", "lowpoly", "game")
SEED = 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", default=os.path.join(tempfile.gettempdir(), "driveanymesh-objaverse-bench"))
    ap.add_argument("--uids", type=int, default=800_000)
    ap.add_argument("--files", type=int, default=160)
    ap.add_argument("--fetches", type=int, default=200)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    home = os.path.abspath(args.mirror)
    uids = write_mirror(home, args.uids, args.files, args.fetches + 1)

    code = """
        import json, time
        from curation.sources.objaverse import ObjaverseSettings, select
        t = time.perf_counter()
        sel = select(ObjaverseSettings())
        print(json.dumps({"wall_s": time.perf_counter() - t, "counts": sel.counts, "rejected": len(sel.rejected)}))
    """
    t = time.perf_counter()
    out = run(home, code)
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux; select's process
    c = out["counts"]
    print(f"select: {wall:.1f} s wall for the process ({out['wall_s']:.1f} s in select), peak RSS "
          f"{peak_mb:.0f} MB; considered {c['considered']:,}, not_animated {c['not_animated']:,}, "
          f"passed {c['passed']:,}, audit rows {out['rejected']:,}")
    print("select counts: " + ", ".join(f"{k} {v:,}" for k, v in c.items()))

    code = f"""
        import json, resource, time
        import objaverse
        from curation.sources.objaverse import fetch
        uids = {uids!r}
        t = time.perf_counter()
        fetch(uids[0])
        first = time.perf_counter() - t
        times = []
        for uid in uids[1:]:
            t = time.perf_counter()
            fetch(uid)
            times.append(time.perf_counter() - t)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the package's calls below
        package = []
        for uid in uids[1:4]:
            t = time.perf_counter()
            objaverse.load_objects([uid])
            package.append(time.perf_counter() - t)
        print(json.dumps({{"first": first, "times": times, "package": package, "rss_mb": rss}}))
    """
    out = run(home, code)
    times = sorted(out["times"])
    ms = [x * 1e3 for x in times]
    print(f"fetch (warm worker, cached GLB): mean {sum(ms) / len(ms):.3f} ms over {len(ms)} fetches after "
          f"the first (median {ms[len(ms) // 2]:.3f}, max {ms[-1]:.3f}); first fetch (parses object-paths) "
          f"{out['first'] * 1e3:.0f} ms; worker peak RSS {out['rss_mb']:.0f} MB (the path table held)")
    pk = [x * 1e3 for x in out["package"]]
    print(f"for comparison, objaverse.load_objects([uid]) on a cached GLB: mean {sum(pk) / len(pk):.0f} ms "
          f"per call ({len(pk)} calls)")
    return 0


def run(home: str, code: str) -> dict:
    """`code` in a fresh Python with HOME=home; its last stdout line, as JSON."""
    env = {**os.environ, "HOME": home, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    env.pop("DRIVEANYMESH_OBJAVERSE_URL", None)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark process failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_mirror(home: str, n_uids: int, n_files: int, n_glbs: int) -> list[str]:
    """Write (or reuse) the mirror; returns the uids that have a cached GLB."""
    params = {"uids": n_uids, "files": n_files, "glbs": n_glbs, "seed": SEED, "version": 1}
    marker = os.path.join(home, "bench-mirror.json")
    root = os.path.join(home, ".objaverse", "hf-objaverse-v1")
    if os.path.exists(marker):
        with open(marker) as f:
            mine = json.load(f)
        if mine["params"] == params:
            print(f"mirror: reusing {root}")
            return mine["glb_uids"]
        shutil.rmtree(os.path.join(home, ".objaverse"))  # ours (the marker says so), other parameters
    elif os.path.exists(os.path.join(home, ".objaverse")):  # never overwrite a cache this script did not write
        raise SystemExit(f"{home}/.objaverse exists and is not a benchmark mirror (no bench-mirror.json)")

    t = time.perf_counter()
    rng = random.Random(SEED)
    dirs = [f"{i // 1000:03d}-{i % 1000:03d}" for i in range(n_files)]
    uids = [make_uid(f"bench{i}") for i in range(n_uids)]
    dir_of = {u: dirs[i * n_files // n_uids] for i, u in enumerate(uids)}
    listed = uids[:]
    rng.shuffle(listed)  # object-paths order is not grouped by metadata file
    _write_json_gz(os.path.join(root, "object-paths.json.gz"), {u: f"glbs/{dir_of[u]}/{u}.glb" for u in listed})
    record_bytes = 0
    for d, dir_id in enumerate(dirs):
        lo, hi = d * n_uids // n_files, (d + 1) * n_uids // n_files
        recs = {u: record(u, random.Random(f"{SEED}-{u}")) for u in uids[lo:hi]}
        record_bytes += _write_json_gz(os.path.join(root, "metadata", f"{dir_id}.json.gz"), recs)
    glb_uids = [uids[i * n_uids // n_glbs] for i in range(n_glbs)]  # spread over the metadata files
    src = tiny_glb(Path(home) / "bench.glb", "bench")
    for u in glb_uids:
        os.makedirs(os.path.join(root, "glbs", dir_of[u]), exist_ok=True)
        shutil.copyfile(src, os.path.join(root, "glbs", dir_of[u], f"{u}.glb"))
    with open(marker, "w") as f:  # last: an interrupted write is redone next time
        json.dump({"params": params, "glb_uids": glb_uids}, f)
    size = sum(os.path.getsize(os.path.join(dp, n)) for dp, _, names in os.walk(root) for n in names)
    print(f"mirror: wrote {root} in {time.perf_counter() - t:.0f} s: {n_uids:,} uids, {n_files} metadata files, "
          f"{record_bytes / n_uids:.0f} bytes of JSON per record, {size / 1e6:.0f} MB on disk")
    return glb_uids


def record(uid: str, rng: random.Random) -> dict:
    """A realistic annotation record: the test schema plus the bulk real records carry."""
    animated = rng.random() < 0.05
    rec = annotation(
        uid, f"Model {uid[:6]}", license=rng.choice(LICENSES),
        animation_count=rng.randint(1, 5) if animated else 0,
        vertex_count=int(10 ** rng.uniform(2, 6.3)), face_count=int(10 ** rng.uniform(2, 6.3)),
        categories=tuple(rng.sample(CATEGORIES, rng.choice((0, 1, 1, 2)))),
        tags=tuple(rng.sample(TAGS, rng.randint(0, 12))))
    base = f"https://media.sketchfab.com/models/{uid}/thumbnails/{make_uid(uid + 'th')}"
    rec["thumbnails"]["images"] = [
        {"uid": make_uid(f"{uid}{w}"), "size": w * h // 8, "width": w, "height": h, "url": f"{base}/{w}x{h}.jpeg"}
        for w, h in ((1920, 1080), (1024, 576), (720, 405), (640, 360), (256, 144), (200, 200))]
    rec["user"]["avatar"]["images"] = [
        {"size": s * s, "width": s, "height": s, "url": f"https://media.sketchfab.com/avatars/{uid[:8]}/{s}.jpeg"}
        for s in (32, 48, 90)]
    rec["description"] = " ".join(rng.choice(("model", "low", "poly", "texture", "rigged", "made", "with",
                                              "blender", "substance", "painter", "for", "a", "game"))
                                  for _ in range(rng.randint(0, 80)))
    rec["archives"] = {kind: {"textureCount": 1, "size": rng.randint(10_000, 50_000_000), "type": kind,
                              "textureMaxResolution": 2048, "faceCount": rec["faceCount"],
                              "vertexCount": rec["vertexCount"]} for kind in ("glb", "gltf", "source", "usdz")}
    return rec


def _write_json_gz(path: str, data: dict) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = json.dumps(data).encode()
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(text)
    return len(text)


if __name__ == "__main__":
    sys.exit(main())
