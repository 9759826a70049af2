"""`driveanymesh eval` on held-out shards with tiny trained models: a per-clip, per-frame CSV with
Chamfer, L2, PSNR, SSIM and LPIPS (the decoded vertices rendered by the renderer's replay; LPIPS from a
backbone file the test writes), ActionBench's metrics per clip, a table in Table 1's layout whose
figures are the CSV's means, a first-frame control that scores worse than the decoded sequence, one
row recomputed from the shard by other code, contact sheets, a killed evaluation that resumes to the
uninterrupted one's figures; and the replay itself, which given the true vertices reproduces the
clip's frames."""
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch
import webdataset as wds
from scipy.spatial import cKDTree

from dataset.clip_sample import ClipSample

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def eval_command(clip_shards, trained_vae, trained_diffusion, out, *extra, shards="test"):
    return [sys.executable, "-m", "driveanymesh", "eval", "--shards", *clip_shards[shards], "--vae", trained_vae,
            "--diffusion", trained_diffusion, "--out", str(out), "--eval-points", "2000",
            "--actionbench-points", "600", *extra]


def by_clip(rows, column):
    values = {}
    for r in rows:
        if r[column] != "":
            values.setdefault(r["key"], []).append(float(r[column]))
    return float(np.mean([np.mean(v) for v in values.values()]))


def test_eval_writes_the_table_the_csv_and_the_contact_sheet(clip_shards, demo_assets, trained_vae, trained_diffusion,
                                                             tmp_path):
    from train.lpips_metric import AlexFeatures

    backbone = tmp_path / "alexnet-random.pth"  # random weights of the right shapes: the loading path, not the figure
    torch.save(AlexFeatures().state_dict(), backbone)
    out = tmp_path / "eval"
    proc = subprocess.run(eval_command(clip_shards, trained_vae, trained_diffusion, out, "--assets",
                                       os.path.dirname(demo_assets["rigid_spinner"]["path"]),
                                       "--lpips-backbone", str(backbone)),
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "per_clip.csv")))
    keys = {r["key"] for r in rows}
    assert len(rows) == 6 * len(keys) > 0  # every keyframe of every test clip
    for r in rows:
        for k in ("reconstruction_chamfer", "generation_chamfer", "reconstruction_l2", "generation_l2"):
            assert 0 <= float(r[k]) < 1
        for k in ("reconstruction_psnr", "generation_psnr"):
            assert 5 < float(r[k]) < 60  # rendered, and not the true frames themselves
        assert 0 < float(r["generation_ssim"]) <= 1
        assert np.isfinite(float(r["reconstruction_lpips"])) and float(r["generation_lpips"]) >= 0
    # the table's figures are the CSV's: each clip's frame mean, averaged over clips
    table = (out / "table.md").read_text()
    line = next(ln for ln in table.splitlines() if ln.startswith("| Ours, VAE reconstruction"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    for i, column in ((1, "reconstruction_psnr"), (4, "reconstruction_chamfer"), (5, "reconstruction_l2")):
        assert float(cells[i]) == pytest.approx(by_clip(rows, column), rel=1e-4, abs=2e-6), column
    ab = list(csv.DictReader(open(out / "actionbench.csv")))
    assert {(r["key"], r["kind"]) for r in ab} == {(k, kind) for k in keys
                                                   for kind in ("reconstruction", "generation", "frozen", "time_mean")}
    assert float(cells[6]) == pytest.approx(np.mean([float(r["cd_3d"]) for r in ab if r["kind"] == "reconstruction"]),
                                            rel=1e-3, abs=1e-4)
    assert "Ours, generation" in table and "Control: first frame held still" in table and "CD-4D" in table
    assert "Control: each point at its mean over the clip" in table and "| view swap |" in table
    assert "Geo. CD" in proc.stdout and "not measured" not in table
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert (out / "contact_sheet_frames.png").stat().st_size > 1_000 and "rendered frames" in proc.stdout


def test_a_csv_row_recomputed_from_the_shard_and_the_first_frame_control(clip_shards, trained_vae, tmp_path):
    from dataset.loaders import LoaderConfig, dense_map, vae_clip_batch
    from train.checkpoint import load_vae
    from train.evaluate import evaluate

    res = evaluate(clip_shards["all"], trained_vae, str(tmp_path / "eval"), eval_points=2000, actionbench_points=600)
    rows = list(csv.DictReader(open(res["csv"])))
    # the clip that moves most, at its last keyframe
    clips = {s["__key__"]: ClipSample(s) for s in wds.WebDataset(clip_shards["all"], shardshuffle=False)}
    key = max(clips, key=lambda k: np.abs(clips[k].verts - clips[k].verts[:1]).mean())
    clip = clips[key]
    t = clip.num_frames - 1
    row = next(r for r in rows if r["key"] == key and int(r["frame"]) == t)
    # the evaluated points, by evaluate's stated rule: the first 2,000 of a permutation of the dense
    # rows drawn from (seed, crc32(key))
    import zlib
    S = dense_map(clip)
    picked = S[np.random.default_rng([0, zlib.crc32(key.encode())]).permutation(S.shape[0])[:2000]]
    true0, true_t = picked @ clip.verts[0], picked @ clip.verts[t]

    def chamfer(a, b):  # mean squared nearest-neighbour distance, both ways
        return float((cKDTree(b).query(a)[0] ** 2).mean() + (cKDTree(a).query(b)[0] ** 2).mean())

    assert float(row["frozen_chamfer"]) == pytest.approx(chamfer(true0, true_t), rel=1e-4)
    assert float(row["frozen_l2"]) == pytest.approx(np.linalg.norm(true0 - true_t, axis=1).mean(), rel=1e-4)
    time_mean = np.mean([picked @ v for v in clip.verts], axis=0)
    assert float(row["time_mean_l2"]) == pytest.approx(np.linalg.norm(time_mean - true_t, axis=1).mean(), rel=1e-4)
    vae = load_vae(trained_vae, "cpu")
    batch = vae_clip_batch(clip, LoaderConfig(image_size=vae.cfg.image_size, resample_points=False, seed=0))
    with torch.no_grad():
        mean, _ = vae.encode(batch["p1"][t:t + 1], batch["views"][t:t + 1])
        pred = vae.decode(mean, torch.as_tensor(true0, dtype=torch.float32)[None])[0].numpy()
    assert float(row["reconstruction_chamfer"]) == pytest.approx(chamfer(pred, true_t), rel=1e-3)
    assert float(row["reconstruction_l2"]) == pytest.approx(np.linalg.norm(pred - true_t, axis=1).mean(), rel=1e-3)
    # the control: holding the first frame still scores worse than the decoded sequence
    later = [r for r in rows if int(r["frame"]) > 0]
    assert by_clip(later, "frozen_chamfer") > by_clip(later, "reconstruction_chamfer")
    assert by_clip(later, "frozen_l2") > by_clip(later, "reconstruction_l2")


def test_a_killed_eval_resumes_to_the_uninterrupted_figures(clip_shards, trained_vae, trained_diffusion, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    proc = subprocess.run(eval_command(clip_shards, trained_vae, trained_diffusion, whole, shards="all"),
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips = len({r["key"] for r in csv.DictReader(open(whole / "per_clip.csv"))})
    assert clips >= 3
    killed = subprocess.Popen(eval_command(clip_shards, trained_vae, trained_diffusion, resumed, shards="all"),
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def kept_clips():
            folder = resumed / "clips"
            return [n for n in os.listdir(folder) if n.endswith(".json")] if folder.exists() else []

        while not kept_clips():  # waiting on the event: the first clip kept
            assert killed.poll() is None, "the evaluation ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    kept = len([n for n in os.listdir(resumed / "clips") if n.endswith(".json")])
    assert 1 <= kept < clips
    proc = subprocess.run(eval_command(clip_shards, trained_vae, trained_diffusion, resumed, shards="all"),
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming: {kept} clips" in proc.stdout + proc.stderr
    for name in ("per_clip.csv", "actionbench.csv", "table.md"):
        assert (resumed / name).read_text() == (whole / name).read_text(), name
    changed = subprocess.run(eval_command(clip_shards, trained_vae, trained_diffusion, resumed, "--seed", "3",
                                          shards="all"), capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert changed.returncode != 0 and re.search(r"other settings \(.*seed", changed.stderr)


def test_replay_of_the_true_vertices_reproduces_the_clip(clip_shards, demo_assets, tmp_path):
    import numpy as np
    import webdataset as wds

    from dataset.clip_sample import ClipSample
    from render.launcher import replay_clip
    from train.evaluate import on_white
    from train.metrics import psnr

    sample = next(s for s in wds.WebDataset(clip_shards["all"], shardshuffle=False) if s["__key__"] == "rigid_spinner_0")
    clip = ClipSample(sample)
    true = [on_white(np.concatenate(list(clip.frame(t)), axis=1)) for t in range(clip.num_frames)]
    from PIL import Image

    def frames(folder):
        return [on_white(np.asarray(Image.open(f"{folder}/frame{t:02d}.png").convert("RGBA")))
                for t in range(clip.num_frames)]

    same, failure = replay_clip(demo_assets["rigid_spinner"]["path"], clip.meta, clip.cameras, clip.verts,
                                str(tmp_path / "same"))
    assert failure is None
    assert min(psnr(a, b) for a, b in zip(frames(same), true)) > 60
    still, _ = replay_clip(demo_assets["rigid_spinner"]["path"], clip.meta, clip.cameras,
                           np.repeat(clip.verts[:1], clip.num_frames, axis=0), str(tmp_path / "still"))
    assert psnr(frames(still)[-1], true[-1]) < 45  # frozen geometry no longer matches the last keyframe


def test_the_frames_sheet_crops_every_view_to_the_object_in_any_of_its_images():
    from train.evaluate import crop_views, object_box

    views, size = 4, 64
    strips = [np.full((size, views * size, 3), 255, np.uint8) for _ in range(2)]
    strips[0][10:20, 30:40] = 0                      # view 0 of the first image
    strips[1][40:50, 3 * size + 5:3 * size + 9] = 0  # view 3 of the second
    box = object_box(strips, views, margin=2)
    assert box == (8, 52, 3, 42)                     # the union, in one panel's coordinates, with the margin
    cropped = crop_views(strips[0], views, box)
    assert cropped.shape == (44, 4 * 39, 3) and (cropped[2:12, 27:37] == 0).all()
    assert object_box([np.full((8, 32, 3), 255, np.uint8)], views) is None


def test_eval_on_a_two_node_ray_cluster_gives_the_figures_of_one_process(clip_shards, trained_vae, tmp_path):
    """`eval --ray-address`: one evaluator actor per CPU of a two-node local cluster; the files are
    those of an evaluation in one process (the same rows in the shards' order, figures to float
    noise: the actors run torch on one thread), and the run prints its rate."""
    from test_cluster import free_port, ray_start, stop

    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    nodes = [ray_start("--head", "--port", str(port), "--num-cpus", "1", "--temp-dir", temp, "--node-ip-address",
                       "127.0.0.1", "--include-dashboard", "false", env=env)]
    try:
        nodes.append(ray_start("--address", address, "--num-cpus", "1", "--node-ip-address", "127.0.0.1", env=env))
        base = [sys.executable, "-m", "driveanymesh", "eval", "--shards", *clip_shards["all"], "--vae", trained_vae,
                "--eval-points", "2000", "--actionbench-points", "600"]
        on_ray = subprocess.run(base + ["--out", str(tmp_path / "ray"), "--ray-address", address, "--workers", "2"],
                                capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    finally:
        for node in reversed(nodes):
            stop(node)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert "evaluating on Ray" in on_ray.stdout and re.search(r"evaluated \d+ clips in \d+ s: \d+ clips/hour",
                                                              on_ray.stdout)
    alone = subprocess.run(base + ["--out", str(tmp_path / "alone")], capture_output=True, text=True, cwd=ROOT,
                           timeout=900)
    assert alone.returncode == 0, alone.stderr[-3000:]
    for name in ("per_clip.csv", "actionbench.csv"):
        got = list(csv.DictReader(open(tmp_path / "ray" / name)))
        want = list(csv.DictReader(open(tmp_path / "alone" / name)))
        assert [(r["key"], r.get("frame"), r.get("kind")) for r in got] == \
            [(r["key"], r.get("frame"), r.get("kind")) for r in want] and len(got) >= 5
        for g, w in zip(got, want):
            for column in w:
                if column not in ("key", "label", "frame", "kind") and w[column] != "":
                    assert float(g[column]) == pytest.approx(float(w[column]), rel=1e-3, abs=1e-7), (name, column)
