"""The `driveanymesh` command: render writes and names its clip folders; config errors stop early."""
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "driveanymesh"]


@pytest.mark.slow
def test_render_command_writes_one_folder_per_animation_and_prints_them(demo_assets, tmp_path):
    out = tmp_path / "clips"
    proc = subprocess.run(CLI + ["render", demo_assets["multi_anim"]["path"], "--out", str(out),
                                 "--resolution", "16", "--keyframes", "2", "--samples", "1",
                                 "--engine", "workbench", "--seed", "3"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ["multi_anim_0", "multi_anim_1", "multi_anim_2"]
    for key in os.listdir(out):
        assert sorted(os.listdir(out / key)) == ["cameras.json", "faces.npy", "frame00.png", "frame01.png",
                                                 "meta.json", "verts.npy"]
        assert f"clip  {out / key}" in proc.stdout
    assert "3 clips, 0 skipped" in proc.stdout


@pytest.mark.slow
def test_render_command_reports_a_bad_asset_and_exits_nonzero(demo_assets, tmp_path):
    proc = subprocess.run(CLI + ["render", demo_assets["not_a_glb"]["path"], "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "unreadable" in proc.stderr


def test_unknown_pipeline_is_a_clear_error(tmp_path):
    proc = subprocess.run(CLI + ["render", "x.glb", "--out", str(tmp_path), "--pipeline", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no pipeline named 'nope'" in proc.stderr


def render_with_clip_in_progress(asset: str, out, resolution: int, samples: int):
    """`driveanymesh render` started and waited for until its first clip is being written: (the CLI
    process, the pid of its one Blender job)."""
    import time

    proc = subprocess.Popen(CLI + ["render", asset, "--out", str(out), "--resolution", str(resolution),
                                   "--keyframes", "30", "--samples", str(samples)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out.exists() and any(p.name.startswith(".tmp-") for p in out.iterdir())):
        assert proc.poll() is None, "the render ended before its first clip started"
        time.sleep(0.2)  # Blender's start-up takes what it takes on a busy machine: no deadline here
    jobs = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(jobs) == 1  # the Blender job, in its own session
    return proc, jobs[0]


@pytest.mark.slow
def test_terminated_render_command_leaves_no_blender_job_and_no_partial_clip(shared_asset, tmp_path):
    import signal

    out = tmp_path / "clips"
    proc, job = render_with_clip_in_progress(shared_asset("fox.glb"), out, resolution=64, samples=64)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not os.path.exists(f"/proc/{job}")  # killed and reaped, not orphaned
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_killed_launcher_takes_its_blender_job_with_it(shared_asset, tmp_path):
    """SIGKILL gives the launcher no chance to clean up (a lost Ray worker): the job must still end."""
    import signal
    import time

    out = tmp_path / "clips"
    proc, job = render_with_clip_in_progress(shared_asset("fox.glb"), out, resolution=128, samples=256)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The job alone would render on for minutes and then write its clip: it must end with no clip.
    while os.path.exists(f"/proc/{job}") and open(f"/proc/{job}/stat").read().split()[2] != "Z":
        assert not [p for p in out.iterdir() if not p.name.startswith(".tmp-")], "the Blender job outlived its launcher"
        time.sleep(0.1)


def test_asset_names_that_need_changing_still_give_distinct_uids():
    from render.launcher import uid_from_path

    assert uid_from_path("/x/rigid_spinner.glb") == "rigid_spinner"
    assert uid_from_path("s3://bucket/assets/fox.gltf") == "fox"
    uids = [uid_from_path(p) for p in ("猫.glb", "狗.glb", "a.b.glb", "a.c.glb", "a-b.glb", "a b.glb")]
    assert len(set(uids)) == len(uids) and all("." not in u and u for u in uids)
    assert uid_from_path("猫.glb") == uid_from_path("/elsewhere/猫.glb") == "猫"  # stable, readable
    assert uid_from_path("a.b.glb").startswith("a-b-") and uid_from_path("été 2.glb").startswith("été-2-")


def test_a_ray_address_nobody_listens_on_fails_at_once_and_writes_nothing(tmp_path):
    """The driver reaches Ray before it writes anything: a wrong --ray-address is a one-line error
    naming the address (not minutes of retries), and the output holds no run.json or journal, so the
    corrected command is not refused as a settings change."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "run"
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text("tiny:\n  source: {kind: demo}\n")
    proc = subprocess.run(CLI + ["--pipelines-file", str(pipelines), "run", "tiny", "--out", str(out),
                                 "--ray-address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "run.json").exists() and not (out / "audit").exists()
