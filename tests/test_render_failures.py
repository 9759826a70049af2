"""A bad asset comes back from the launcher as a failure of the right kind, quickly, with no clip
folder and no temporary folder left behind."""
import os

import pytest

from render.launcher import render_asset
from tests.conftest import still_glb, tiny_job

pytestmark = pytest.mark.slow


def assert_nothing_written(out):
    assert not os.path.exists(out) or os.listdir(out) == []


@pytest.mark.parametrize("name", ["truncated", "not_a_glb"])
def test_corrupt_and_non_glb_files_are_unreadable(name, demo_assets, tmp_path):
    res = render_asset(demo_assets[name]["path"], str(tmp_path / "out"), tiny_job())
    assert not res.ok and res.failure["kind"] == "unreadable"
    assert "glTF import failed" in res.failure["message"] and name in res.failure["message"]
    assert_nothing_written(tmp_path / "out")


def test_missing_corrupt_and_unsupported_files_say_which(tmp_path):
    res = render_asset(str(tmp_path / "nope.glb"), str(tmp_path / "out"), tiny_job())
    assert res.failure["kind"] == "unreadable" and "no such file" in res.failure["message"]
    corrupt = tmp_path / "model.fbx"
    corrupt.write_bytes(b"\0" * 64)
    res = render_asset(str(corrupt), str(tmp_path / "out"), tiny_job())
    assert res.failure["kind"] == "unreadable" and "FBX import failed" in res.failure["message"]
    other = tmp_path / "model.3ds"
    other.write_bytes(b"\0" * 64)
    res = render_asset(str(other), str(tmp_path / "out"), tiny_job())
    assert res.failure["kind"] == "unsupported_format" and "'.3ds' not imported" in res.failure["message"]
    assert_nothing_written(tmp_path / "out")


def test_asset_without_animation_is_recorded_as_such(shared_asset, tmp_path):
    path = still_glb(shared_asset("fox.glb"), tmp_path / "still_fox.glb")  # a valid, static file
    res = render_asset(path, str(tmp_path / "out"), tiny_job())
    assert res.failure["kind"] == "no_animation", res.failure
    assert_nothing_written(tmp_path / "out")


def test_timeout_kills_the_job_and_leaves_no_partial_clip(shared_asset, tmp_path):
    job = tiny_job(resolution=64, samples=64, keyframes=30)
    res = render_asset(shared_asset("fox.glb"), str(tmp_path / "out"), job, timeout_s=4)
    assert res.failure["kind"] == "timeout"  # killed at its deadline; alone it renders for about a minute
    assert_nothing_written(tmp_path / "out")  # the half-rendered clip's temporary folder is gone


def test_progress_is_reported_and_other_jobs_temporary_folders_are_left_alone(demo_assets, tmp_path):
    out = tmp_path / "out"
    other = out / ".tmp-multi_anim_0-999999999"  # another job's clip in progress in the same folder
    other.mkdir(parents=True)
    seen = []
    res = render_asset(demo_assets["multi_anim"]["path"], str(out), tiny_job(resolution=16, samples=1, keyframes=3),
                       on_progress=seen.append)
    assert res.ok and len(res.clips) == 3
    assert other.exists()
    assert seen and seen[-1]["clips"] == 3 and seen[-1]["frames"] == 3
    assert [(p["clip"], p["frame"]) for p in seen] == sorted((p["clip"], p["frame"]) for p in seen)


def test_a_blender_process_that_dies_is_a_crash_and_keeps_finished_clips(demo_assets, tmp_path):
    """The job is killed by a segfault signal during its second clip: kind crash, the first clip
    (complete) stays and is reported, the one in progress leaves nothing."""
    import signal

    out = tmp_path / "out"
    killed_in = []

    def kill_in_second_clip(p):
        if p["clip"] >= 2 and not killed_in:
            killed_in.append(p["clip"])
            os.kill(p["pid"], signal.SIGSEGV)

    # 30 keyframes x 4 views per clip: seconds per clip, far longer than the launcher's 0.5 s poll
    res = render_asset(demo_assets["multi_anim"]["path"], str(out), tiny_job(resolution=32, samples=2, keyframes=30),
                       on_progress=kill_in_second_clip)
    assert res.failure["kind"] == "crash" and "SIGSEGV" in res.failure["message"]
    done = [f"multi_anim_{i}" for i in range(killed_in[0] - 1)]
    assert "multi_anim_0" in done
    assert sorted(os.listdir(out)) == done and [c["key"] for c in res.clips] == done
    for key in done:
        assert (out / key / "meta.json").exists() and (out / key / "frame29.png").exists()
