"""Geometry first: rules that need only the vertices decide before a single image is rendered, with
the rule, reasons and values they record after rendering; what they let through is rendered and
packed exactly as without the gate."""
import dataclasses
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from curation.filters import FilterSettings
from dataset.storage import Store
from render.launcher import render_asset
from tests.conftest import tiny_job, tiny_pipelines_file
from tests.test_cluster import members, same_clips

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "driveanymesh"]
GATED = {"static_statue": "ssim_motion", "runaway": "bounds", "scene_spread": "scene_like"}


def test_clips_that_cannot_pass_are_decided_without_rendering_an_image(demo_assets, tmp_path):
    job = tiny_job(resolution=32, samples=1, keyframes=6)
    job.gate = {"module": "curation.filters", "settings": dataclasses.asdict(FilterSettings())}
    for name, rule in {**GATED, "rigid_spinner": None}.items():
        res = render_asset(demo_assets[name]["path"], str(tmp_path / name), job)
        (clip,) = res.clips
        files = os.listdir(clip["dir"])
        if rule is None:  # it can pass: rendered in full
            assert clip["images"] == 6 * 4 and not clip["decided_before_render"] and "frame05.png" in files
            continue
        # the job's own count of render calls, and nothing rendered on disk
        assert clip["images"] == 0 and clip["decided_before_render"] and "render" not in res.timings, name
        assert not [f for f in files if f.endswith(".png")] and {"verts.npy", "faces.npy", "meta.json"} <= set(files)
        with open(os.path.join(clip["dir"], "meta.json")) as f:
            assert json.load(f)["gate"]["rule"] == rule


def run(pipelines, out, *extra):
    proc = subprocess.run(CLI + ["--pipelines-file", pipelines, "run", "tiny", "--out", str(out), "--workers", "2",
                                 *extra], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pq.read_table(os.path.join(out, "audit.parquet")).to_pandas().query("stage == 'filter' and final")


def test_the_gate_changes_no_accepted_clip_and_no_decision(demo_assets, tmp_path):
    names = ["rigid_spinner", "creature_textured", *GATED]
    pipelines = tiny_pipelines_file(tmp_path, [demo_assets[n]["path"] for n in names])
    paper = ("--set", "keyframes.selection=random")  # the paper's windows: only the gate differs
    gated = run(pipelines, tmp_path / "gated", *paper)
    plain = run(pipelines, tmp_path / "plain", *paper, "--set", "filters.geometry_first=false")
    assert same_clips(members(Store(str(tmp_path / "gated"))), members(Store(str(tmp_path / "plain"))))
    by_uid = {r.uid: r for r in plain.itertuples()}
    for r in gated.itertuples():
        before, after = json.loads(r.values), json.loads(by_uid[r.uid].values)
        assert (r.status, r.rule) == (by_uid[r.uid].status, by_uid[r.uid].rule)
        assert bool(r.decided_before_render) == (r.uid in GATED) and not by_uid[r.uid].decided_before_render
        # what the gate measured is what the rules measure after rendering (the images' values aside)
        assert {k: v for k, v in after.items() if k in before} == before
        # the deciding reason, less what only the images say (a static clip's SSIM half)
        assert r.uid not in GATED or r.reasons[0].split(": ", 1)[1] in by_uid[r.uid].reasons[0]
