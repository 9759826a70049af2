"""The published splits of a run: splits.json from the final audit rows, `audit OUT uids` and the
dataset card. Journals are written through the real AuditLog with rows as the driver makes them
(its `asset_row` and `attribution`, Objaverse annotations through `asset_info`); one test reads the
output of a real pipeline run (the `clip_shards` session fixture)."""
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import driveanymesh
from curation import audit
from curation.audit_report import REPORT_VALUES
from curation.dataset_card import CARD, write_card
from curation.driver import asset_row, attribution
from curation.sources import AssetTask
from curation.sources.objaverse import asset_info
from curation.pipeline_config import Pipeline, SourceSettings
from curation.split import split_of
from curation.splits import SPLITS, SPLITS_VALUES, build_splits, read_splits, select_uids, write_splits
from dataset.shard_writer import read_tar_samples
from dataset.storage import Store
from tests.objaverse_mirror import annotation, make_uid

CLI = [sys.executable, "-m", "driveanymesh"]
FRACTION = 0.5


def objaverse_task(name: str, license: str) -> AssetTask:
    uid = make_uid(name)
    info = asset_info({**annotation(uid, name, license=license), "user": {"displayName": f"{name} maker"}})
    return AssetTask(uid, "objaverse", license=info["license"], info=info)


def clip_row(uid: str, index: int, status: str = "accepted", label: str = "textured") -> dict:
    """A filter-stage row as process_clip records it (split from the real split rule)."""
    return audit.row(uid, "filter", status, rule=None if status == "accepted" else "bounds", animation=f"Anim{index}",
                     animation_index=index, label=label, split=split_of(uid, FRACTION), key=f"{uid}_{index}",
                     values={"bounds_max_abs": 0.6, "ssim_change": 0.2, "staged_bytes": 1000})


TASKS = [objaverse_task("Dancing Fox", "by"), objaverse_task("Robot [v2] | walk\ncycle", "by-sa"),
         objaverse_task("Spinner", "cc0"), AssetTask("local_blob", "local", path="/assets/local_blob.glb")]


def asset_rows(task: AssetTask, clips: list[dict]) -> list[dict]:
    return [*clips, asset_row(task.uid, clips, {"clips": len(clips), "accepted": len(clips),
                                                "attribution": attribution(task)}, {"total": 1.0})]


def journal(out: Store, order=1) -> audit.AuditLog:
    """A run's journal: 3 Objaverse assets and a local one accepted (clips recorded out of key order),
    one rejected, one cut short (accepted clip, no asset row: not finished), one retried."""
    fox, robot, spinner, local = TASKS
    per_asset = [
        asset_rows(fox, [clip_row(fox.uid, 2), clip_row(fox.uid, 0), clip_row(fox.uid, 1, "rejected")]),
        asset_rows(robot, [clip_row(robot.uid, 0, label="textureless")]),
        asset_rows(spinner, [clip_row(spinner.uid, 0)]),
        asset_rows(local, [clip_row(local.uid, 1, label="textureless"), clip_row(local.uid, 10, label="textureless")]),
        asset_rows(AssetTask("statue", "local"), [clip_row("statue", 0, "rejected")]),
        [clip_row("cut_short", 0)],
    ]
    log = audit.AuditLog(out, "cfg123")
    for rows in per_asset[::order]:
        log.record([{**r, "attempt": 1} for r in rows])
    # attempt 2 of the spinner keeps only clip 3: what it accepted before no longer counts
    log.record([{**r, "attempt": 2} for r in asset_rows(spinner, [clip_row(spinner.uid, 3)])])
    log.close()
    return log


def run_json(out: Store, kind: str = "objaverse") -> dict:
    pipe = Pipeline(name="objaverse-animated", source=SourceSettings(kind=kind))
    pipe.split.test_fraction = FRACTION
    run = {"pipeline": dataclasses.asdict(pipe), "config_hash": "cfg123", "overrides": ["render.samples=64"],
           "config_changes": []}
    out.write("run.json", json.dumps(run).encode())
    return run


def test_splits_list_each_finished_accepted_asset_with_its_credit_sorted_by_uid(tmp_path):
    out = Store(str(tmp_path / "run"))
    run = run_json(out)
    log = journal(out)
    # what the driver holds at the end of a run: the slim final rows of its one read of the journal
    slim = audit.scan(log.iter_rows(), keep_values=REPORT_VALUES | SPLITS_VALUES).rows
    splits = build_splits(slim, run)
    assert splits == build_splits(log.rows(), run)  # slim rows or full rows: the same splits

    fox, _, spinner, _ = TASKS
    by_uid = {a["uid"]: a for a in splits["assets"]}
    assert [a["uid"] for a in splits["assets"]] == sorted(by_uid) == sorted(t.uid for t in TASKS)
    assert by_uid[fox.uid] == {"uid": fox.uid, "label": "textured", "split": split_of(fox.uid, FRACTION),
                               "keys": [f"{fox.uid}_0", f"{fox.uid}_2"], "license": "by",
                               "author": "Dancing Fox maker", "name": "Dancing Fox",
                               "viewerUrl": f"https://sketchfab.com/3d-models/{fox.uid}"}
    assert by_uid[spinner.uid]["keys"] == [f"{spinner.uid}_3"]  # the last attempt decides
    assert by_uid["local_blob"]["keys"] == ["local_blob_1", "local_blob_10"]
    # the local source knows no licence or author: the keys stay, with null
    assert {k: by_uid["local_blob"][k] for k in ("license", "author", "name", "viewerUrl")} == dict.fromkeys(
        ("license", "author", "name", "viewerUrl"))
    assert splits["pipeline"] == "objaverse-animated" and splits["config_hash"] == "cfg123"
    assert splits["test_fraction"] == FRACTION

    expected = {}
    for a in splits["assets"]:
        cell = expected.setdefault((a["label"], split_of(a["uid"], FRACTION)), [0, 0])
        cell[0], cell[1] = cell[0] + 1, cell[1] + len(a["keys"])
    got = {(label, split): [c["assets"], c["clips"]] for label, per in splits["counts"]["by_label_split"].items()
           for split, c in per.items() if c["assets"]}
    assert got == expected and splits["counts"]["assets"] == 4 and splits["counts"]["clips"] == 6
    assert splits["counts"]["licenses"] == {"by": 1, "by-sa": 1, "cc0": 1, "unknown": 1}

    write_splits(out, splits)
    first = (tmp_path / "run" / SPLITS).read_bytes()
    other = Store(str(tmp_path / "again"))  # the same data, recorded in another order
    write_splits(other, build_splits(journal(other, order=-1).rows(), run_json(other)))
    assert (tmp_path / "again" / SPLITS).read_bytes() == first
    assert not list((tmp_path / "run").glob("*.tmp-*"))


def test_audit_uids_filters_by_label_and_split_from_splits_json_or_else_the_journal(tmp_path, capsys):
    out = Store(str(tmp_path / "run"))
    run = run_json(out)
    journal(out)
    splits = build_splits(audit.AuditLog(out).rows(), run)
    test_uids = sorted(a["uid"] for a in splits["assets"] if a["split"] == "test")
    textureless_test = sorted(a["uid"] for a in splits["assets"] if (a["label"], a["split"]) == ("textureless", "test"))
    # both splits and both labels hold assets: each filter has something to drop
    assert 0 < len(textureless_test) < len(test_uids) < 4

    def uids(*flags) -> list[str]:
        assert driveanymesh.main(["audit", out.root, "uids", *flags]) == 0
        return capsys.readouterr().out.splitlines()

    # no splits.json yet (a run still going): built from the journal
    assert not out.exists(SPLITS)
    assert uids("--split", "test") == test_uids
    assert uids("--label", "textureless", "--split", "test") == textureless_test
    write_splits(out, splits)
    out.delete(out.list(audit.JOURNAL_DIR))  # from here only splits.json can answer
    assert uids() == sorted(a["uid"] for a in splits["assets"])
    assert uids("--split", "test") == test_uids
    assert uids("--label", "textured") == sorted(a["uid"] for a in splits["assets"] if a["label"] == "textured")

    assert driveanymesh.main(["audit", out.root, "summary", "--split", "test"]) == 2
    assert "--label and --split go with `audit DIR uids`" in capsys.readouterr().err
    assert driveanymesh.main(["audit", str(tmp_path / "nothing"), "uids"]) == 2
    assert "no splits.json and no audit rows" in capsys.readouterr().err
    with pytest.raises(ValueError, match="split 'val' is not one of train, test"):
        select_uids(splits, split="val")


def test_the_card_has_hub_front_matter_credits_settings_and_a_split_rule_that_reproduces_the_split(tmp_path):
    out = Store(str(tmp_path / "run"))
    run_json(out)
    journal(out)
    card = Path(write_card(out))
    assert card == tmp_path / "run" / CARD
    text = card.read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == ["cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0", "unknown"]
    assert front["size_categories"] == ["n<1K"] and {"4d", "mesh", "animation", "objaverse"} <= set(front["tags"])
    assert {c["config_name"] for c in front["configs"]} == {"textured", "textureless"}

    splits = read_splits(out)
    fox = TASKS[0]
    credits = [line for line in text.splitlines() if line.startswith("- ") and "(uid `" in line]
    assert len(credits) == len(splits["assets"]) == 4
    assert (f"- Dancing Fox by Dancing Fox maker, <https://sketchfab.com/3d-models/{fox.uid}>, CC BY 4.0 "
            f"(uid `{fox.uid}`)") in credits
    assert "- unknown by unknown, unknown, unknown (uid `local_blob`)" in credits
    # a name with Markdown in it stays one line of plain text
    assert f"- Robot \\[v2\\] \\| walk cycle by Robot \\[v2\\] \\| walk cycle maker, " in text
    assert "| CC BY-SA 4.0 | cc-by-sa-4.0 | 1 |" in text and "| unknown | unknown | 1 |" in text
    for label, per in splits["counts"]["by_label_split"].items():
        for split, c in per.items():
            assert f"| {label} | {split} | {c['assets']} | {c['clips']} |" in text
    assert "| all | all | 4 | 6 |" in text

    assert "| `filters.max_jump` | `1.0` |" in text and "| `filters.scene_min_components` | `10` |" in text
    assert '| `source.objaverse.licenses` | `["by", "by-sa", "cc0"]` |' in text
    assert f"| `split.test_fraction` | `{FRACTION}` |" in text and "| `render.resolution` | `256` |" in text
    assert "`cfg123`" in text and "`render.samples=64`" in text
    assert "curation.split.split_of(uid, test_fraction)" in text and "test = 50% of assets" in text

    # the card's code, run on its own, gives every asset its published split, and any uid its split
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(code, scope)
    assert all(scope["split_of"](a["uid"], FRACTION) == a["split"] for a in splits["assets"])
    uids = [make_uid(str(i)) for i in range(500)]
    assert [scope["split_of"](u, 0.1) for u in uids] == [split_of(u, 0.1) for u in uids]


@pytest.mark.slow
def test_a_pipeline_run_publishes_splits_that_match_its_shards(clip_shards):
    run = Path(clip_shards["all"][0]).parents[2]
    assert (run / "manifest.json").exists() and (run / SPLITS).exists()
    splits = json.loads((run / SPLITS).read_text())
    # what the shards hold: each clip's uid, label and split as its own meta.json and shard say
    truth: dict[str, set] = {}
    for s in json.loads((run / "manifest.json").read_text())["shards"]:
        for sample in read_tar_samples((run / s["path"]).read_bytes()):
            meta = json.loads(sample["meta.json"])
            truth.setdefault((meta["uid"], s["label"], s["split"]), set()).add(sample["__key__"])
    assert {(a["uid"], a["label"], a["split"]): set(a["keys"]) for a in splits["assets"]} == truth
    assert splits["counts"]["clips"] == clip_shards["clips"]
    assert all(a["license"] is None and "author" in a for a in splits["assets"])  # local source: no credit known
    test_uids = sorted({uid for uid, _, split in truth if split == "test"})
    assert test_uids and len(test_uids) < len({uid for uid, _, _ in truth})

    proc = subprocess.run(CLI + ["audit", str(run), "uids", "--split", "test"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == test_uids
    proc = subprocess.run(CLI + ["audit", str(run), "card"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"card: {run / CARD}"
    assert all(f"(uid `{a['uid']}`)" in (run / CARD).read_text() for a in splits["assets"])


def test_splits_and_the_card_go_through_the_store_to_an_object_store(s3_bucket, capsys):
    out = Store(f"{s3_bucket['url']}/run")
    run = run_json(out)
    journal(out)  # an object store's journal: segments rewritten whole
    assert driveanymesh.main(["audit", out.root, "uids", "--split", "test"]) == 0
    from_journal = capsys.readouterr().out.splitlines()
    url = write_splits(out, build_splits(audit.AuditLog(out).rows(), run))
    assert url == f"{out.root}/{SPLITS}" and out.list() == sorted(["run.json", SPLITS, *out.list("audit")])
    assert select_uids(json.loads(out.read(SPLITS)), split="test") == from_journal and from_journal
    assert driveanymesh.main(["audit", out.root, "card"]) == 0
    assert capsys.readouterr().out.strip() == f"card: {out.root}/{CARD}"
    assert out.read(CARD).decode().startswith("---\nlicense:\n- cc-by-4.0\n")
