"""The Ray pipeline end to end on demo assets at tiny settings: decisions by the right rule, shards that
plain webdataset reads with every member of the contract, a manifest that matches the files, and a
run killed with SIGKILL that finishes, when started again, with every accepted clip exactly once."""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curation.clip_processing import thumb_path
from tests.conftest import still_glb, tiny_pipelines_file

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "driveanymesh"]
ASSETS = ["rigid_spinner", "static_statue", "runaway", "not_a_glb", "multi_anim", "too_short", "blob_shapekeys"]
ACCEPTED = {"rigid_spinner_0", "multi_anim_0", "multi_anim_1", "multi_anim_2", "blob_shapekeys_0"}
EXPECTED_RULE = {"static": "ssim_motion", "bounds": "bounds", "scene_like": "scene_like", "too_short": "too_short",
                 "unreadable": "unreadable"}


def pipeline_file(tmp_path, demo_assets, names=ASSETS) -> str:
    return tiny_pipelines_file(tmp_path, [demo_assets[n]["path"] for n in names])


def run_cli(pipelines: str, out, *extra, **kw):
    return subprocess.run(CLI + ["--pipelines-file", pipelines, "run", "tiny", "--out", str(out), "--workers", "2",
                                 *extra], capture_output=True, text=True, **kw)


def shard_contents(out) -> dict:
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    samples = {}
    for s in manifest["shards"]:
        path = os.path.join(out, s["path"])
        data = open(path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == s["sha256"]
        got = list(wds.WebDataset(path, shardshuffle=False))
        assert [x["__key__"] for x in got] == s["keys"] and len(got) == s["samples"]
        assert s["path"].startswith(f"shards/{s['label']}/{s['split']}-")
        for x in got:
            assert x["__key__"] not in samples, "a clip in two shards"
            samples[x["__key__"]] = (s, x)
    return samples


def test_every_demo_asset_is_decided_by_the_rule_meant_for_it(tmp_path, demo_assets):
    out = tmp_path / "run"
    proc = run_cli(pipeline_file(tmp_path, demo_assets, names=sorted(demo_assets)), out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pq.read_table(out / "audit.parquet").to_pandas()
    for name, info in demo_assets.items():
        mine = table[(table.uid == name) & (table.stage != "asset")]
        if info["expect"] == "accept":
            assert set(mine.status) == {"accepted"} and len(mine) == len(info["animations"]), name
        else:
            assert EXPECTED_RULE[info["expect"]] in set(mine.rule), (name, list(mine.rule))
            assert "accepted" not in set(mine.status), name


def test_demo_assets_through_the_pipeline(tmp_path, demo_assets):
    out = tmp_path / "run"
    proc = run_cli(pipeline_file(tmp_path, demo_assets), out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "manifest:" in proc.stdout and "audit:" in proc.stdout
    samples = shard_contents(out)
    assert set(samples) == ACCEPTED
    for key, (shard, x) in samples.items():
        meta = json.loads(x["meta.json"])
        cams = json.loads(x["cameras.json"])
        verts = np.load(io.BytesIO(x["verts.npy"]))
        faces = np.load(io.BytesIO(x["faces.npy"]))
        assert verts.dtype == np.float32 and verts.shape == (6, meta["vertices"], 3)
        assert faces.dtype == np.int32 and faces.shape == (meta["faces"], 3)
        assert cams["convention"] == "opencv" and len(cams["views"]) == 4
        assert all(f"frame{t:02d}.png" in x for t in range(6))
        assert meta["split"] == shard["split"] and ("textured" if meta["textured"] else "textureless") == shard["label"]
        assert meta["dense"]["points"] >= 50_000 and meta["config_hash"]
    assert json.loads(samples["multi_anim_0"][1]["meta.json"])["textured"]  # checker texture bound

    table = pq.read_table(out / "audit.parquet").to_pandas()
    decided = {(r.uid, r.stage): r.rule for r in table.itertuples() if r.status in ("rejected", "error")}
    assert decided[("static_statue", "filter")] == "ssim_motion"
    assert decided[("runaway", "filter")] == "bounds"
    assert decided[("not_a_glb", "render")] == "unreadable"
    assert decided[("too_short", "render")] == "too_short"
    assert set(table[table.stage == "asset"].uid) == set(ASSETS)
    why = subprocess.run(CLI + ["audit", str(out), "why", "runaway"], capture_output=True, text=True).stdout
    assert "bounds" in why and "bounds_max_abs = " in why

    page = (out / "report" / "index.html").read_text()
    assert "Accepted clips (5)" in page and "Rejected by bounds (1)" in page and "Rejected by ssim_motion (1)" in page
    for key in ACCEPTED | {"runaway_0", "static_statue_0"}:
        rel = thumb_path(key)  # thumbs/<2 hex>/<key>.png
        assert rel.startswith("thumbs/") and rel.count("/") == 2
        assert f"../{rel}" in page and (out / rel).exists()
    assert (out / "report" / "hist_ssim_change.png").exists() and "hist_bounds_max_abs.png" in page


def test_killed_run_resumes_to_exactly_once(tmp_path, demo_assets):
    out = tmp_path / "run"
    pipelines = pipeline_file(tmp_path, demo_assets)
    cmd = CLI + ["--pipelines-file", pipelines, "run", "tiny", "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while len(journal_rows(out, stage="asset")) < 2:  # an event; a stalled run meets pytest's timeout
        assert proc.poll() is None, "the run ended before the kill"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its embedded Ray, mid-run
    proc.wait()
    finished_before = {r["uid"] for r in journal_rows(out, stage="asset")}
    assert 2 <= len(finished_before) < len(ASSETS)

    again = run_cli(pipelines, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(shard_contents(out)) == ACCEPTED
    redone = [r["uid"] for r in journal_rows(out, stage="asset") if r["uid"] in finished_before]
    assert sorted(redone) == sorted(finished_before)  # finished assets were not processed again
    assert not list(out.glob("staging/*/*/*.tar")) and not list(out.rglob("*.tmp-*"))
    assert "verified: 5 accepted clips" in again.stdout


def journal_rows(out, stage: str) -> list[dict]:
    """Every journal row of `stage` in the order recorded (repeats included), read as a user would."""
    rows = []
    for seg in sorted((out / "audit").glob("journal-*.jsonl")) if (out / "audit").exists() else []:
        rows += [json.loads(ln) for ln in seg.read_text().splitlines()]
    return [r for r in rows if r["stage"] == stage]


def test_a_run_whose_shards_lost_a_clip_says_so_and_exits_nonzero(tmp_path, demo_assets):
    out = tmp_path / "run"
    pipelines = pipeline_file(tmp_path, demo_assets, names=["rigid_spinner", "static_statue"])
    assert run_cli(pipelines, out).returncode == 0
    verify = subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0 and "verified: 1 accepted clips" in verify.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"] = []  # as if a shard had never been committed while its asset is finished
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = run_cli(pipelines, out)
    assert again.returncode == 1 and "accepted clips are in no shard: rigid_spinner_0" in again.stderr
    assert subprocess.run(CLI + ["verify", str(out)], capture_output=True, text=True).returncode == 1


def test_robot_through_the_local_source_gives_one_decision_per_animation(tmp_path, shared_asset):
    folder = tmp_path / "assets"
    folder.mkdir()
    os.symlink(shared_asset("robot_expressive.glb"), folder / "robot_expressive.glb")
    path = tmp_path / "pipelines.yaml"
    path.write_text(f"tiny:\n  source: {{kind: local, path: {folder}}}\n  keyframes: {{count: 3}}\n"
                    f"  render: {{resolution: 24, samples: 1}}\n")
    out = tmp_path / "run"
    proc = subprocess.run(CLI + ["--pipelines-file", str(path), "run", "tiny", "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pq.read_table(out / "audit.parquet").to_pandas()
    clips = table[table.stage == "filter"]
    assert sorted(clips.animation_index) == list(range(14)) and len(set(clips.animation)) == 14
    assert set(clips.label) == {"textureless"}
    # each accepted clip is in the shards exactly once; each rejection names its rule
    assert set(shard_contents(out)) == set(clips[clips.status == "accepted"].key)
    assert clips[clips.status == "rejected"].rule.notna().all()


def test_objaverse_mirror_end_to_end_to_shards(tmp_path, demo_assets):
    """The real objaverse package against an offline mirror (HOME points at it): metadata rules drop
    what they should, workers fetch the selected GLBs from the package's cache, shards hold the result."""
    from pathlib import Path

    from tests.objaverse_mirror import annotation, make_uid, write_mirror

    home = tmp_path / "home"
    good, still, nc, scan, plain = (make_uid(n) for n in ("spinner", "statue", "nc", "scan", "plain"))
    records = {good: annotation(good, "Spinner"), still: annotation(still, "Statue"),
               nc: annotation(nc, license="by-nc"), scan: annotation(scan, tags=("scan",)),
               plain: annotation(plain, animation_count=0)}
    write_mirror(home, records, {good: Path(demo_assets["rigid_spinner"]["path"]),
                                 still: Path(demo_assets["static_statue"]["path"])})
    path = tmp_path / "pipelines.yaml"
    path.write_text("tiny:\n  source: {kind: objaverse}\n  keyframes: {count: 6}\n"
                    "  render: {resolution: 32, samples: 1}\n")
    out = tmp_path / "run"
    proc = subprocess.run(CLI + ["--pipelines-file", str(path), "run", "tiny", "--out", str(out), "--workers", "2"],
                          capture_output=True, text=True, env={**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = shard_contents(out)
    assert set(samples) == {f"{good}_0"}
    meta = json.loads(samples[f"{good}_0"][1]["meta.json"])
    assert meta["source"] == "objaverse" and meta["license"] == "by" and meta["author"] == "Test Author"
    # the credit CC BY asks for reaches splits.json through the audit, as the clip's meta.json has it
    [entry] = json.loads((out / "splits.json").read_text())["assets"]
    assert entry["uid"] == good and entry["keys"] == [f"{good}_0"]
    assert entry["viewerUrl"] == records[good]["viewerUrl"] and entry["name"] == "Spinner"
    assert {k: entry[k] for k in ("license", "author", "name", "viewerUrl")} == {
        k: meta[k] for k in ("license", "author", "name", "viewerUrl")}
    table = pq.read_table(out / "audit.parquet").to_pandas()
    decided = {r.uid: (r.stage, r.rule) for r in table.itertuples() if r.status != "accepted" and r.stage != "asset"}
    assert decided == {nc: ("metadata", "license"), scan: ("metadata", "scene_tag"), still: ("filter", "ssim_motion")}


def test_a_still_asset_is_a_rejection_settings_changes_are_refused_and_errors_retried_on_request(
        tmp_path, demo_assets):
    out = tmp_path / "run"
    still = still_glb(demo_assets["rigid_spinner"]["path"], tmp_path / "still_spinner.glb")
    pipelines = tiny_pipelines_file(tmp_path, [still, demo_assets["not_a_glb"]["path"]])
    assert run_cli(pipelines, out).returncode == 0
    table = pq.read_table(out / "audit.parquet").to_pandas()
    rows = {(r.uid, r.stage): (r.status, r.rule) for r in table.itertuples()}
    assert rows[("still_spinner", "render")] == ("rejected", "no_animation")
    assert rows[("still_spinner", "asset")][0] == "done" and rows[("not_a_glb", "asset")][0] == "error"

    changed = run_cli(pipelines, out, "--set", "render.samples=2")
    assert changed.returncode == 2 and "render.samples: 1 -> 2" in changed.stderr
    assert "--allow-config-change" in changed.stderr
    assert len(journal_rows(out, stage="asset")) == 2  # refused before anything ran

    transient = run_cli(pipelines, out, "--retry-errors")
    assert transient.returncode == 0, transient.stderr[-3000:]
    assert len(journal_rows(out, stage="asset")) == 2  # an unreadable file is a permanent error: not retried

    again = run_cli(pipelines, out, "--retry-errors", "all", "--set", "render.samples=2", "--allow-config-change")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(r["uid"] for r in journal_rows(out, stage="asset")) == ["not_a_glb", "not_a_glb", "still_spinner"]
    run_info = json.loads((out / "run.json").read_text())
    assert [c["changed"] for c in run_info["config_changes"]] == [["render.samples: 1 -> 2"]]
    table = pq.read_table(out / "audit.parquet").to_pandas()
    retried = table[(table.uid == "not_a_glb") & (table.stage == "asset")]
    assert sorted(retried.attempt) == [1, 2] and list(retried[retried.final].attempt) == [2]


class FlakyFiles:
    """Files over loopback HTTP; the first request for each path fails with 503 (a download that
    fails once, then succeeds)."""

    def __init__(self, folder):
        import functools
        import http.server
        import threading

        seen = set()

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                if self.path not in seen:
                    seen.add(self.path)
                    self.send_error(503, "busy")
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_retry_errors_redoes_exactly_the_transient_failures_and_colliding_names_stay_apart(tmp_path, demo_assets):
    import shutil

    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(demo_assets["rigid_spinner"]["path"], served / "spinner.glb")
    local = tmp_path / "local"
    local.mkdir()
    for name in ("猫 1.glb", "猫.1.glb"):  # the same after unsafe characters go: still two uids, two clips
        shutil.copy(demo_assets["rigid_spinner"]["path"], local / name)
    http = FlakyFiles(served)
    try:
        pipelines = tiny_pipelines_file(tmp_path, [f"{http.url}/spinner.glb", str(local / "猫 1.glb"),
                                                   str(local / "猫.1.glb"), demo_assets["not_a_glb"]["path"]])
        out = tmp_path / "run"
        first = run_cli(pipelines, out)
        assert first.returncode == 0, first.stderr[-3000:]
        table = pq.read_table(out / "audit.parquet").to_pandas()
        errors = {r.uid: r.rule for r in table.itertuples() if r.stage == "asset" and r.status == "error"}
        assert errors == {"spinner": "download_failed", "not_a_glb": "unreadable"}
        accepted = set(shard_contents(out))
        assert len(accepted) == 2 and all(k.startswith("猫-1-") for k in accepted)  # readable, distinct

        again = run_cli(pipelines, out, "--retry-errors")
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        http.close()
    redone = [r["uid"] for r in journal_rows(out, stage="asset")][4:]
    assert redone == ["spinner"]  # the transient failure only, not the unreadable file
    assert set(shard_contents(out)) == accepted | {"spinner_0"}
    assert "verified: 3 accepted clips" in again.stdout


def test_an_asset_past_the_memory_limit_ends_as_out_of_memory_and_its_neighbour_is_accepted(tmp_path, demo_assets):
    from tests.test_memory_limit import HEAVY_TEXTURE, textured_spinner_glb

    heavy = textured_spinner_glb(tmp_path / "heavy.glb", HEAVY_TEXTURE)  # ~3.2 GB resident in Blender
    pipelines = tiny_pipelines_file(tmp_path, [heavy, demo_assets["rigid_spinner"]["path"]])
    out = tmp_path / "run"
    proc = run_cli(pipelines, out, "--set", "ray.memory_per_task=1.5GiB")  # a normal job: ~0.65 GB
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pq.read_table(out / "audit.parquet").to_pandas()
    heavy_asset = table[(table.uid == "heavy") & (table.stage == "asset")].iloc[0]
    assert heavy_asset.status == "error" and heavy_asset.rule == "out_of_memory"
    assert json.loads(heavy_asset["values"])["transient"] is True  # a bigger node may take it: --retry-errors
    assert set(shard_contents(out)) == {"rigid_spinner_0"}
