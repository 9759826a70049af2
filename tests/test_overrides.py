"""A person's decisions over the rules' (curation/overrides.py): recorded through `audit OUT override`,
honoured by the next run (a rejected clip leaves its shard, an accepted one is rendered and packed),
shown beside the rules' verdict, and never half written."""
import html
import json
import subprocess
import sys

import pytest

from curation import overrides
from dataset.storage import Store
from tests.conftest import tiny_pipelines_file
from tests.test_pipeline import journal_rows, run_cli, shard_contents

CLI = [sys.executable, "-m", "driveanymesh"]


def audit_cli(out, *args):
    return subprocess.run(CLI + ["audit", str(out), *args], capture_output=True, text=True)


def test_a_malformed_overrides_file_is_refused_with_its_line(tmp_path):
    store = Store(str(tmp_path))
    good = overrides.Override("a_0", "a", "reject", "a scan", "ana", "2026-12-04T15:00:00+0000")
    overrides.append(store, [good])
    assert overrides.read(store) == {"a_0": good}
    (tmp_path / overrides.OVERRIDES).write_text(json.dumps(good.record()) + "\n" + '{"key": "b_0", "uid": "b", '
                                                '"decision": "maybe", "reason": "x"}\n')
    with pytest.raises(overrides.OverridesError, match="line 2: decision must be one of"):
        overrides.read(store)
    before = (tmp_path / overrides.OVERRIDES).read_bytes()
    with pytest.raises(overrides.OverridesError, match="line 2"):
        overrides.append(store, [good])
    assert (tmp_path / overrides.OVERRIDES).read_bytes() == before  # nothing written
    (tmp_path / overrides.OVERRIDES).write_text("{not json\n")
    with pytest.raises(overrides.OverridesError, match="line 1: not JSON"):
        overrides.read(store)


@pytest.mark.slow
def test_overrides_take_effect_on_the_next_run_exactly_once(tmp_path, demo_assets):
    out = tmp_path / "run"
    names = ["rigid_spinner", "blob_shapekeys", "static_statue"]
    pipelines = tiny_pipelines_file(tmp_path, [demo_assets[n]["path"] for n in names])
    first = run_cli(pipelines, out)
    assert first.returncode == 0, first.stderr[-3000:]
    assert set(shard_contents(out)) == {"rigid_spinner_0", "blob_shapekeys_0"}

    # the review page of a rule: each clip with the line that reverses it, the reason left to the person
    proc = audit_cli(out, "review", "--rule", "ssim_motion")
    assert proc.returncode == 0, proc.stderr
    page = (out / "report" / "review-ssim_motion.html").read_text()
    assert "static_statue_0" in page and "rigid_spinner_0" not in page
    assert html.escape(json.dumps({"key": "static_statue_0", "decision": "accept", "reason": ""})) in page

    # refused, nothing written: an unknown key, a batch with one bad line
    proc = audit_cli(out, "override", "nobody_0", "reject", "--reason", "x")
    assert proc.returncode == 2 and "'nobody_0' is no clip key or uid" in proc.stderr
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"key": "static_statue", "decision": "accept", "reason": "slow but real motion"})
                     + "\n" + json.dumps({"key": "rigid_spinner_0", "decision": "drop", "reason": "x"}) + "\n")
    proc = audit_cli(out, "override", "--from", str(batch))
    assert proc.returncode == 2 and "line 2" in proc.stderr and "decision must be one of" in proc.stderr
    assert not (out / overrides.OVERRIDES).exists()

    # a clip a rule accepted, rejected by a person; an asset a rule rejected, accepted (from a batch)
    proc = audit_cli(out, "override", "rigid_spinner_0", "reject", "--reason", "a turntable, no deformation",
                     "--by", "ana")
    assert proc.returncode == 0, proc.stderr
    batch.write_text(json.dumps({"key": "static_statue", "decision": "accept", "reason": "slow but real motion"}) + "\n")
    assert audit_cli(out, "override", "--from", str(batch), "--by", "ben").returncode == 0
    assert len((out / overrides.OVERRIDES).read_text().splitlines()) == 2

    second = run_cli(pipelines, out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "verified: 2 accepted clips" in second.stdout
    samples = shard_contents(out)  # sha256, keys and one shard per clip, as a user reads them
    assert set(samples) == {"blob_shapekeys_0", "static_statue_0"}
    meta = json.loads(samples["static_statue_0"][1]["meta.json"])
    assert meta["override"]["decision"] == "accept" and meta["override"]["rule"] == "ssim_motion"
    summary = audit_cli(out, "summary").stdout
    assert "rejected  -> accepted" in summary and "accepted  -> rejected" in summary
    assert subprocess.run(CLI + ["verify", str(out)], capture_output=True).returncode == 0
    assert "Overridden by a person (2)" in (out / "report" / "index.html").read_text()
    splits = json.loads((out / "splits.json").read_text())
    assert splits["counts"]["overridden"] == {"accepted": 1, "rejected": 1}
    assert audit_cli(out, "card").returncode == 0
    assert "1 accepted that a rule rejected, 1 rejected that the rules accepted" in (out / "DATASET_CARD.md").read_text()
    redone = [r["uid"] for r in journal_rows(out, stage="asset")]
    assert sorted(redone) == sorted(names + ["rigid_spinner", "static_statue"])  # only the overridden, once

    why = audit_cli(out, "why", "rigid_spinner").stdout
    assert "override" in why and "rules:    accepted" in why and "override: reject by ana" in why
    why = audit_cli(out, "why", "static_statue").stdout
    assert "rules:    rejected (ssim_motion)" in why and "override: accept by ben" in why

    # nothing new: nothing processed again, the shards as they were
    third = run_cli(pipelines, out)
    assert third.returncode == 0 and len(journal_rows(out, stage="asset")) == len(redone)
    assert set(shard_contents(out)) == {"blob_shapekeys_0", "static_statue_0"}

    # a malformed file stops the run before it writes anything
    with open(out / overrides.OVERRIDES, "a") as f:
        f.write("{broken\n")
    run_json = (out / "run.json").read_bytes()
    fourth = run_cli(pipelines, out)
    assert fourth.returncode != 0 and "overrides.jsonl line 3" in fourth.stderr
    assert (out / "run.json").read_bytes() == run_json and len(journal_rows(out, stage="asset")) == len(redone)
