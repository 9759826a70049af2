"""The objaverse-xl source against an offline mirror in Objaverse-XL's layout: the package's annotation
parquet (<dir>/github/github.parquet), the rendering script's per-object metadata records, and raw
GitHub files at their commits; selection with audited reasons, then a run that fetches, checks and
renders the selected object."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from curation.dataset_card import dataset_card
from curation.splits import read_run_info, read_splits
from dataset.storage import Store
from curation.sources import objaverse_xl
from tests.test_pipeline import journal_rows, shard_contents

CLI = [sys.executable, "-m", "driveanymesh"]
MIT = "MIT License"


def blob(org, path, commit="0123456789abcdef0123456789abcdef01234567"):
    return f"https://github.com/{org}/models/blob/{commit}/{path}"


def write_mirror(root, files: dict, spinner: dict) -> dict:
    """Annotations, metadata records and raw files; `files`, `spinner`: format -> a copy of the creature
    and of the spinner demo asset (`spinner["glb"]` the asset itself). Returns the settings keys and the
    sha256 of each named object."""
    raw = root / "raw"
    rows, records, shas = [], [], {}

    def add(name, data, file_type, license=MIT, meta=None, org="ana", sha=None):
        ident = blob(org, f"assets/{name}")
        dest = raw / org / "models" / ident.split("/blob/")[1].split("/")[0] / "assets" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        shas[name] = sha or hashlib.sha256(data).hexdigest()
        rows.append({"fileIdentifier": ident, "source": "github", "license": license, "fileType": file_type,
                     "sha256": shas[name], "metadata": json.dumps({"github_organization": org})})
        if meta is not None:
            records.append({"file_identifier": ident, "sha256": shas[name], **meta})

    anim = {"animation_count": 1, "armature_count": 1, "shape_key_count": 0, "vert_count": 500, "poly_count": 800}
    add("walker.fbx", open(files["fbx"], "rb").read(), "fbx", meta=anim)
    add("walker.usdc", open(files["usd"], "rb").read(), "usdc", meta=anim)  # every selected format renders
    add("spinner.glb", open(spinner["glb"], "rb").read(), "glb", meta=anim)
    add("spinner.blend", open(spinner["blend"], "rb").read(), "blend", meta=anim)
    add("statue.blend", open(files["blend"], "rb").read(), "blend", meta={**anim, "animation_count": 0})
    add("unseen.glb", b"glTF-not-rendered", "glb")  # no metadata record
    add("part.stl", b"solid part", "stl")
    add("gpl.fbx", b"fbx-gpl", "fbx", license="GNU General Public License v3.0", meta=anim)
    add("huge.fbx", b"fbx-huge", "fbx", meta={**anim, "vert_count": 2_000_000})
    add("changed.fbx", b"fbx-changed-since", "fbx", meta=anim, sha="0" * 64)  # the file no longer matches
    (root / "xl" / "github").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "xl" / "github" / "github.parquet")
    with open(root / "metadata.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return {"annotations_dir": str(root / "xl"), "animation_metadata": str(root / "metadata.jsonl"),
            "raw": f"file://{raw}", "shas": shas}


def mirror_of(tmp_path, demo_assets, demo_copies) -> dict:
    return write_mirror(tmp_path, demo_copies("creature_textured"),
                        {**demo_copies("rigid_spinner"), "glb": demo_assets["rigid_spinner"]["path"]})


def test_selection_reads_the_layout_and_gives_each_dropped_candidate_its_reason(tmp_path, demo_assets, demo_copies):
    m = mirror_of(tmp_path, demo_assets, demo_copies)
    s = objaverse_xl.ObjaverseXLSettings(annotations_dir=m["annotations_dir"],
                                         animation_metadata=m["animation_metadata"])
    sel = objaverse_xl.select(s)
    sha = m["shas"]
    rendered = ("walker.fbx", "walker.usdc", "spinner.glb", "spinner.blend")
    assert {t.uid for t in sel.tasks} == {sha[n] for n in rendered + ("changed.fbx",)}
    walker = next(t for t in sel.tasks if t.uid == sha["walker.fbx"])
    assert walker.license == MIT and walker.info["author"] == "ana" and walker.info["fileType"] == "fbx"
    assert walker.info["viewerUrl"].startswith("https://github.com/ana/models/blob/")
    by_rule = {r["rule"]: r for r in sel.rejected}
    assert set(by_rule) == {"license", "too_many_vertices"}
    assert by_rule["license"]["uid"] == sha["gpl.fbx"] and "GNU General" in by_rule["license"]["reasons"][0]
    assert by_rule["too_many_vertices"]["uid"] == sha["huge.fbx"]
    c = sel.counts
    assert (c["considered"], c["file_type"], c["no_metadata"], c["not_animated"], c["selected"]) == (10, 1, 1, 1, 5)
    # a smaller limit is a prefix of a larger one
    s.limit = 1
    assert [t.uid for t in objaverse_xl.select(s).tasks] == [t.uid for t in sel.tasks][:1]
    assert objaverse_xl.raw_url(walker.info["fileIdentifier"]).startswith(
        "https://raw.githubusercontent.com/ana/models/0123456789abcdef0123456789abcdef01234567/assets/")


def test_a_run_fetches_checks_and_renders_the_selected_object(tmp_path, demo_assets, demo_copies):
    m = mirror_of(tmp_path, demo_assets, demo_copies)
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(f"""
xl:
  source:
    kind: objaverse-xl
    objaverse_xl: {{annotations_dir: {m['annotations_dir']}, animation_metadata: {m['animation_metadata']}}}
  keyframes: {{count: 6}}
  render: {{resolution: 32, samples: 1, timeout_s: 120}}
  split: {{test_fraction: 0.0}}
""")
    out = tmp_path / "run"
    env = {**os.environ, objaverse_xl.RAW_URL_ENV: m["raw"]}
    proc = subprocess.run(CLI + ["--pipelines-file", str(pipelines), "run", "xl", "--out", str(out),
                                 "--workers", "2"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sha = m["shas"]
    assert set(shard_contents(out)) == {f"{sha[n]}_0" for n in ("walker.fbx", "walker.usdc", "spinner.glb",
                                                                  "spinner.blend")}  # each format it selects
    failed = [r for r in journal_rows(out, "download")]
    assert [r["uid"] for r in failed] == [sha["changed.fbx"]] and "differs from the annotation" in failed[0]["reasons"][0]
    meta_rules = {r["rule"] for r in journal_rows(out, "metadata")}
    assert meta_rules == {"license", "too_many_vertices"}
    card = dataset_card(read_splits(Store(str(out))), read_run_info(Store(str(out))))
    assert "source.objaverse_xl.licenses" in card and "objaverse-xl" in card  # the source's rules and tag
    verify = subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    shutil.rmtree(tmp_path / "raw")  # nothing of the mirror is needed to read the outputs
    why = subprocess.run(CLI + ["audit", str(out), "why", sha["gpl.fbx"]], capture_output=True, text=True)
    assert why.returncode == 0 and "license" in why.stdout
