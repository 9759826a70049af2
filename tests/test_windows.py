"""Windows chosen by motion, several per long animation: each its own clip and key, none overlapping,
through the renderer and through the pipeline to the shards."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from curation.filters import FilterSettings
from render.launcher import render_asset
from tests.conftest import tiny_job, tiny_pipelines_file
from tests.test_cluster import members
from dataset.storage import Store

pytestmark = pytest.mark.slow


def test_three_windows_of_a_long_animation_are_three_clips_that_do_not_overlap(demo_assets, tmp_path):
    job = tiny_job(resolution=24, samples=1, keyframes=6)
    job.keyframes.windows_per_animation = 3
    res = render_asset(demo_assets["rigid_spinner"]["path"], str(tmp_path / "clips"), job)  # 61 frames
    assert [c["key"] for c in res.clips] == ["rigid_spinner_0", "rigid_spinner_0_w1", "rigid_spinner_0_w2"]
    ranges = []
    for c in res.clips:
        with open(os.path.join(c["dir"], "meta.json")) as f:
            meta = json.load(f)
        assert meta["window"]["selection"] == "motion" and meta["window"]["motion_score"] > 0
        ranges.append((meta["keyframes"][0], meta["keyframes"][-1]))
    ranges.sort()
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])), ranges


def test_windows_reach_the_shards_each_exactly_once(demo_assets, tmp_path):
    pipelines = tiny_pipelines_file(tmp_path, [demo_assets["rigid_spinner"]["path"]])
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "driveanymesh", "--pipelines-file", pipelines, "run", "tiny",
                           "--out", str(out), "--workers", "2", "--set", "keyframes.windows_per_animation=3"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(members(Store(str(out)))) == ["rigid_spinner_0", "rigid_spinner_0_w1", "rigid_spinner_0_w2"]
    assert "verified: 3 accepted clips" in proc.stdout


def test_an_animation_that_idles_first_gives_a_moving_clip_under_motion(demo_assets, tmp_path):
    """late_mover rests for 100 of its 150 frames: a window placed by motion moves; random windows
    (a few seeds) can miss the motion and are then decided static before rendering."""
    job = tiny_job(resolution=24, samples=1, keyframes=6)
    job.gate = {"module": "curation.filters", "settings": dataclasses.asdict(FilterSettings())}
    res = render_asset(demo_assets["late_mover"]["path"], str(tmp_path / "motion"), job)
    (clip,) = res.clips
    assert not clip["decided_before_render"] and clip["images"] == 6 * 4
    with open(os.path.join(clip["dir"], "meta.json")) as f:
        assert json.load(f)["keyframes"][-1] > 100  # inside the motion
    job.keyframes.selection = "random"
    static = 0
    for seed in range(4):
        job.seed = seed
        (clip,) = render_asset(demo_assets["late_mover"]["path"], str(tmp_path / f"random{seed}"), job).clips
        static += clip["decided_before_render"]
    assert static > 0
