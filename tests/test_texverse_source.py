"""The texverse source against an offline mirror in TexVerse's layout: metadata.json keyed by uid, the
TexVerse-Animation id list, and the Skeleton-Animation files (`<uid>.zip` of the original upload, or
`<uid>.<ext>`) listed in model_paths.txt; selection with audited reasons, then a run that fetches,
unpacks and renders."""
import json
import os
import subprocess
import sys
import zipfile

import pytest

from curation.sources import texverse
from tests.format_copies import format_copies
from tests.test_pipeline import journal_rows, shard_contents

CLI = [sys.executable, "-m", "driveanymesh"]
UID = {name: f"{i:02d}" + "ab" * 15 for i, name in enumerate(
    ["walker", "worm", "collada", "still", "nc", "missing_file", "no_record"])}


def write_mirror(root, copies: dict) -> dict:
    files = root / "files"
    (files / "animated").mkdir(parents=True)
    with zipfile.ZipFile(files / "animated" / f"{UID['walker']}.zip", "w") as z:  # an upload with its readme
        z.write(copies["fbx"], "source/walker.fbx")
        z.writestr("source/readme.txt", "made by ana")
    (files / "animated" / f"{UID['worm']}.blend").write_bytes(open(copies["blend"], "rb").read())
    with zipfile.ZipFile(files / "animated" / f"{UID['collada']}.zip", "w") as z:
        z.write(copies["dae"], "model.dae")
    paths = [f"animated/{UID[n]}.zip" for n in ("walker", "collada")] + [f"animated/{UID['worm']}.blend"]
    paths += [f"animated/{UID[n]}.glb" for n in ("still", "nc")]
    by = {"license": {"label": "CC Attribution", "slug": "by"}, "animation": 2, "faceCount": 900,
          "isRigged": True, "user": {"displayName": "Ana"}}
    metadata = {UID["walker"]: {**by, "name": "Walker"}, UID["worm"]: {**by, "name": "Worm"},
                UID["collada"]: {**by, "name": "Collada"}, UID["still"]: {**by, "animation": 0, "name": "Still"},
                UID["nc"]: {**by, "license": "CC Attribution-NonCommercial", "name": "NC"},
                UID["missing_file"]: {**by, "name": "Gone"}, "ff" * 16: {**by, "name": "Not listed"}}
    (root / "metadata.json").write_text(json.dumps(metadata))
    (root / "ids.txt").write_text("\n".join(UID.values()) + "\n")
    (root / "model_paths.txt").write_text("\n".join(paths) + "\n")
    return {"metadata": str(root / "metadata.json"), "id_list": str(root / "ids.txt"),
            "model_paths": str(root / "model_paths.txt"), "files_url": f"file://{files}"}


@pytest.fixture
def mirror(tmp_path, demo_assets):
    return write_mirror(tmp_path, format_copies(demo_assets["creature_textured"]["path"], str(tmp_path / "copies")))


def test_selection_reads_the_layout_and_gives_each_listed_uid_a_decision(mirror):
    tasks, rejected, counts = texverse.select(texverse.TexVerseSettings(**mirror))
    assert {t.uid for t in tasks} == {UID["walker"], UID["worm"], UID["collada"]}
    walker = next(t for t in tasks if t.uid == UID["walker"])
    assert walker.license == "CC Attribution" and walker.info["author"] == "Ana"
    assert walker.info["viewerUrl"] == f"https://sketchfab.com/3d-models/{UID['walker']}"
    assert {r["uid"]: r["rule"] for r in rejected} == {
        UID["still"]: "not_animated", UID["nc"]: "license", UID["missing_file"]: "no_file",
        UID["no_record"]: "no_metadata"}
    assert counts["considered"] == 7 and counts["selected"] == 3


def test_unzip_refuses_a_member_outside_its_folder(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../escape.glb", b"x")
    with pytest.raises(texverse.FetchError, match="outside the folder"):
        texverse.unzip(str(bad), str(tmp_path / "out"), 1 << 20)
    assert not (tmp_path / "escape.glb").exists()


def test_a_run_fetches_unpacks_and_renders(tmp_path, mirror):
    pipelines = tmp_path / "pipelines.yaml"
    settings = ", ".join(f"{k}: {v}" for k, v in mirror.items())
    pipelines.write_text(f"""
tv:
  source: {{kind: texverse, texverse: {{{settings}}}}}
  keyframes: {{count: 6}}
  render: {{resolution: 32, samples: 1, timeout_s: 120}}
  split: {{test_fraction: 0.0}}
""")
    out = tmp_path / "run"
    proc = subprocess.run(CLI + ["--pipelines-file", str(pipelines), "run", "tv", "--out", str(out),
                                 "--workers", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(shard_contents(out)) == {f"{UID['walker']}_0", f"{UID['worm']}_0"}  # the zipped FBX, the .blend
    dae = [r for r in journal_rows(out, "render") if r["uid"] == UID["collada"]]
    assert [r["rule"] for r in dae] == ["unsupported_format"] and "COLLADA" in dae[0]["reasons"][0]
    assert {r["rule"] for r in journal_rows(out, "metadata")} == {"not_animated", "license", "no_file", "no_metadata"}
    verify = subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _, sample = shard_contents(out)[f"{UID['walker']}_0"]
    meta = json.loads(sample["meta.json"])  # the clip carries its licence and its link, not the file
    assert meta["license"] == "CC Attribution" and meta["author"] == "Ana" and meta["source"] == "texverse"
    assert meta["viewerUrl"] == f"https://sketchfab.com/3d-models/{UID['walker']}"
