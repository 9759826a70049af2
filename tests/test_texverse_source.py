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
from tests.test_pipeline import journal_rows, shard_contents

CLI = [sys.executable, "-m", "driveanymesh"]
UID = {name: f"{i:02d}" + "ab" * 15 for i, name in enumerate(
    ["walker", "worm", "collada", "still", "nc", "missing_file", "no_record", "spinner", "usd"])}


def write_mirror(root, copies: dict, spinner_glb: str) -> dict:
    files = root / "files"
    (files / "animated").mkdir(parents=True)
    with zipfile.ZipFile(files / "animated" / f"{UID['walker']}.zip", "w") as z:  # an upload with its readme
        z.write(copies["fbx"], "source/walker.fbx")
        z.writestr("source/readme.txt", "made by ana")
    (files / "animated" / f"{UID['worm']}.blend").write_bytes(open(copies["blend"], "rb").read())
    with zipfile.ZipFile(files / "animated" / f"{UID['collada']}.zip", "w") as z:
        z.write(copies["dae"], "model.dae")
    with zipfile.ZipFile(files / "animated" / f"{UID['usd']}.zip", "w") as z:  # USD beside its textures
        z.write(copies["usd"], "walker.usdc")
        for name in os.listdir(os.path.join(os.path.dirname(copies["usd"]), "textures")):
            z.write(os.path.join(os.path.dirname(copies["usd"]), "textures", name), f"textures/{name}")
    (files / "animated" / f"{UID['spinner']}.glb").write_bytes(open(spinner_glb, "rb").read())
    paths = [f"animated/{UID[n]}.zip" for n in ("walker", "collada", "usd")] + [f"animated/{UID['worm']}.blend"]
    paths += [f"animated/{UID['spinner']}.glb"]
    paths += [f"animated/{UID[n]}.glb" for n in ("still", "nc")]
    by = {"license": {"label": "CC Attribution", "slug": "by"}, "animation": 2, "faceCount": 900,
          "isRigged": True, "user": {"displayName": "Ana"}}
    metadata = {UID["walker"]: {**by, "name": "Walker"}, UID["worm"]: {**by, "name": "Worm"},
                UID["collada"]: {**by, "name": "Collada"}, UID["still"]: {**by, "animation": 0, "name": "Still"},
                UID["nc"]: {**by, "license": "CC Attribution-NonCommercial", "name": "NC"},
                UID["missing_file"]: {**by, "name": "Gone"}, "ff" * 16: {**by, "name": "Not listed"},
                UID["spinner"]: {**by, "name": "Spinner"}, UID["usd"]: {**by, "name": "Walker USD"}}
    (root / "metadata.json").write_text(json.dumps(metadata))
    (root / "ids.txt").write_text("\n".join(UID.values()) + "\n")
    (root / "model_paths.txt").write_text("\n".join(paths) + "\n")
    return {"metadata": str(root / "metadata.json"), "id_list": str(root / "ids.txt"),
            "model_paths": str(root / "model_paths.txt"), "files_url": f"file://{files}"}


@pytest.fixture
def mirror(tmp_path, demo_assets, demo_copies):
    return write_mirror(tmp_path, demo_copies("creature_textured"), demo_assets["rigid_spinner"]["path"])


def test_selection_reads_the_layout_and_gives_each_listed_uid_a_decision(mirror):
    tasks, rejected, counts = texverse.select(texverse.TexVerseSettings(**mirror))
    assert {t.uid for t in tasks} == {UID[n] for n in ("walker", "worm", "collada", "spinner", "usd")}
    walker = next(t for t in tasks if t.uid == UID["walker"])
    assert walker.license == "CC Attribution" and walker.info["author"] == "Ana"
    assert walker.info["viewerUrl"] == f"https://sketchfab.com/3d-models/{UID['walker']}"
    assert {r["uid"]: r["rule"] for r in rejected} == {
        UID["still"]: "not_animated", UID["nc"]: "license", UID["missing_file"]: "no_file",
        UID["no_record"]: "no_metadata"}
    assert counts["considered"] == 9 and counts["selected"] == 5


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
    # a zipped FBX, a .blend, a GLB, a zipped USD with its textures: each format the uploads come in
    assert set(shard_contents(out)) == {f"{UID[n]}_0" for n in ("walker", "worm", "spinner", "usd")}
    dae = [r for r in journal_rows(out, "render") if r["uid"] == UID["collada"]]
    assert [r["rule"] for r in dae] == ["unsupported_format"] and "COLLADA" in dae[0]["reasons"][0]
    assert {r["rule"] for r in journal_rows(out, "metadata")} == {"not_animated", "license", "no_file", "no_metadata"}
    verify = subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    _, sample = shard_contents(out)[f"{UID['walker']}_0"]
    meta = json.loads(sample["meta.json"])  # the clip carries its licence and its link, not the file
    assert meta["license"] == "CC Attribution" and meta["author"] == "Ana" and meta["source"] == "texverse"
    assert meta["viewerUrl"] == f"https://sketchfab.com/3d-models/{UID['walker']}"
