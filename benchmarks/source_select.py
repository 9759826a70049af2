"""Selection at full size for the objaverse-xl and texverse sources: seconds and peak memory.

Writes (once, into --work) inputs of the published sizes in each source's layout, with made-up
values: an Objaverse-XL GitHub annotation parquet (--xl-rows, ~10M in the published table; file
types drawn in the proportions below) with per-object metadata records for --xl-metadata of them
(1% animated), and TexVerse's metadata.json (--texverse-rows, ~860k records), a 54,430-uid
animation id list and its model_paths.txt. Then runs each source's `select` in a fresh process and
prints its seconds, its peak resident memory (VmHWM) and its counts.

    python benchmarks/source_select.py [--work /tmp/dam-source-select] [--xl-rows 10000000]
        [--xl-metadata 3000000] [--texverse-rows 860000]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# file types of the synthetic annotation rows (a guess at the mix, stated as such; only the share
# of imported types changes how many rows reach Python)
TYPES = {"obj": 0.30, "stl": 0.25, "glb": 0.12, "fbx": 0.10, "gltf": 0.08, "ply": 0.06, "dae": 0.04,
         "blend": 0.03, "usdz": 0.01, "abc": 0.01}


def write_xl(work: str, rows: int, metadata_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(work, "xl", "github", "github.parquet")
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(0)
    writer, chunk = None, 1_000_000
    meta = open(os.path.join(work, "xl-metadata.jsonl"), "w")
    left = metadata_rows
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        idx = np.arange(start, start + n)
        sha = [f"{i:064x}" for i in idx]
        ident = [f"https://github.com/org{i % 50000}/repo{i % 7919}/blob/{i % 999983:040x}/models/m{i}" for i in idx]
        types = rng.choice(list(TYPES), size=n, p=list(TYPES.values()))
        lic = rng.choice(["MIT License", "Apache License 2.0", "GNU General Public License v3.0", "Other"], size=n)
        table = pa.table({"fileIdentifier": ident, "source": ["github"] * n, "license": lic,
                          "fileType": types, "sha256": sha, "metadata": ["{}"] * n})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        for i in np.flatnonzero(np.isin(types, ["glb", "fbx", "blend", "usdz"]))[:left]:
            anim = int(rng.random() < 0.01)
            meta.write(json.dumps({"file_identifier": ident[i], "sha256": sha[i], "animation_count": anim,
                                   "armature_count": anim, "shape_key_count": 0, "vert_count": 5000,
                                   "poly_count": 9000}) + "\n")
            left -= 1
    writer.close()
    meta.close()


def write_texverse(work: str, rows: int, animated: int = 54_430) -> None:
    path = os.path.join(work, "texverse", "metadata.json")
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(0)
    uids = [f"{i:032x}" for i in range(rows)]
    listed = rng.choice(rows, size=min(animated, rows), replace=False)
    animated_set = set(listed.tolist())
    with open(path, "w") as f:
        f.write("{")
        for i, uid in enumerate(uids):
            rec = {"name": f"model {i}", "license": "CC Attribution", "animation": int(i in animated_set),
                   "isRigged": bool(i % 2), "faceCount": int(rng.integers(100, 900_000)),
                   "tags": ["character", "animated"], "pbrType": "metalness", "max_texture": 2048,
                   "glb_paths": [f"glbs/glbs_1k/000-{i % 1000:03d}/{uid}_1024.glb"],
                   "description": "d" * 650}  # the published file's ~840 MB for ~860k records
            f.write(("," if i else "") + json.dumps(uid) + ":" + json.dumps(rec))
        f.write("}")
    with open(os.path.join(work, "texverse", "ids.txt"), "w") as f:
        f.writelines(uids[i] + "\n" for i in listed)
    with open(os.path.join(work, "texverse", "model_paths.txt"), "w") as f:
        f.writelines(f"animated/{uids[i]}.zip\n" for i in listed)


CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})

def peak_gb():  # VmHWM: this process's own peak (ru_maxrss survives exec: it would count the parent's)
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 2**20

t = time.perf_counter()
if {kind!r} == "xl":
    from curation.sources import objaverse_xl as m
    sel = m.select(m.ObjaverseXLSettings(annotations_dir={work!r} + "/xl",
                                         animation_metadata={work!r} + "/xl-metadata.jsonl"))
    counts = sel.counts
else:
    from curation.sources import texverse as m
    w = {work!r} + "/texverse/"
    counts = m.select(m.TexVerseSettings(metadata=w + "metadata.json", id_list=w + "ids.txt",
                                         model_paths=w + "model_paths.txt"))[2]
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "peak_gb": peak_gb(), "counts": counts}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/dam-source-select")
    ap.add_argument("--xl-rows", type=int, default=10_000_000)
    ap.add_argument("--xl-metadata", type=int, default=3_000_000)
    ap.add_argument("--texverse-rows", type=int, default=860_000)
    args = ap.parse_args()
    t = time.perf_counter()
    write_xl(args.work, args.xl_rows, args.xl_metadata)
    write_texverse(args.work, args.texverse_rows)
    print(f"inputs in {args.work} ({time.perf_counter() - t:.0f} s to write or find)", flush=True)
    print("| source | rows | seconds | peak resident GB | selected |\n| --- | --- | --- | --- | --- |")
    for kind, rows in (("xl", args.xl_rows), ("texverse", args.texverse_rows)):
        proc = subprocess.run([sys.executable, "-c", CHILD.format(root=ROOT, kind=kind, work=args.work)],
                              capture_output=True, text=True, check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {kind} | {rows:,} | {res['seconds']:.0f} | {res['peak_gb']:.2f} | {res['counts']['selected']:,} |")
        print(f"counts: {res['counts']}", flush=True)


if __name__ == "__main__":
    main()
