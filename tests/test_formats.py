"""Asset formats: every format Blender imports renders the same clip as the GLB it was exported from;
OBJ (no animation) and COLLADA (no importer in Blender 5) end as recorded rejections."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from tests.conftest import tiny_job, tiny_pipelines_file
from tests.test_pipeline import journal_rows, run_cli, shard_contents
from render.launcher import render_asset

CLI = [sys.executable, "-m", "driveanymesh"]


def test_each_imported_format_renders_the_glbs_clip(tmp_path, demo_assets, demo_copies):
    glb = demo_assets["creature_textured"]["path"]
    copies = demo_copies("creature_textured")
    job = tiny_job(resolution=32, samples=1, keyframes=4)
    clips = {}
    for fmt, path in {"glb": glb, **copies}.items():
        res = render_asset(path, str(tmp_path / fmt), job, uid="creature")  # one uid: the same keyframes
        if fmt in ("obj", "dae"):
            assert not res.clips, fmt
            continue
        assert res.failure is None and len(res.clips) == 1, (fmt, res.failure, res.log_tail)
        clip = res.clips[0]["dir"]
        clips[fmt] = (np.load(os.path.join(clip, "verts.npy")), json.load(open(os.path.join(clip, "meta.json"))))
    ref, ref_meta = clips.pop("glb")
    motion = np.abs(ref - ref[:1]).max()
    assert motion > 0.05  # the clip moves, so equal trajectories say the animation came through
    for fmt, (verts, meta) in clips.items():
        assert meta["keyframes"] == ref_meta["keyframes"], fmt
        assert verts.shape == ref.shape and np.abs(verts - ref).max() < 1e-4, fmt  # measured: 2e-7
        scene = meta["texture_evidence"]["scene"]  # textures travel with the file: still textured
        assert scene["n_textured_materials"] == 1 and scene["textured_face_fraction"] == 1.0, fmt


def test_a_folder_of_formats_is_audited_asset_by_asset(tmp_path, demo_copies):
    copies = demo_copies("rigid_spinner")
    folder = tmp_path / "assets"
    folder.mkdir()
    for fmt in ("fbx", "obj", "dae"):  # the folder itself is the source: its listing picks formats
        shutil.copy(copies[fmt], folder / os.path.basename(copies[fmt]))
    (folder / "notes.txt").write_text("not an asset\n")
    pipelines = tiny_pipelines_file(tmp_path, [])
    text = open(pipelines).read().replace(f"path: {tmp_path / 'assets.txt'}", f"path: {folder}")
    open(pipelines, "w").write(text.replace("test_fraction: 0.5", "test_fraction: 0.0"))
    out = tmp_path / "run"
    proc = run_cli(pipelines, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assets = {r["uid"]: r for r in journal_rows(out, "render") if r["animation"] is None}
    assert set(assets) == {"rigid_spinner_obj", "rigid_spinner_dae"}  # the FBX rendered: no asset-level row
    assert assets["rigid_spinner_obj"]["status"] == "rejected" and assets["rigid_spinner_obj"]["rule"] == "no_animation"
    dae = assets["rigid_spinner_dae"]
    assert dae["status"] == "rejected" and dae["rule"] == "unsupported_format" and "COLLADA" in dae["reasons"][0]
    assert [k for k in shard_contents(out)] == ["rigid_spinner_fbx_0"]
    why = subprocess.run(CLI + ["audit", str(out), "why", "rigid_spinner_dae"], capture_output=True, text=True)
    assert why.returncode == 0 and "unsupported_format" in why.stdout, why.stdout + why.stderr
    verify = subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
