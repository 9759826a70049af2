import os

import pyarrow.parquet as pq

import json

import pytest

from curation.audit import AuditLog, latest, resume_state, row, summary, why
from curation.split import split_of


def test_split_is_stable_and_near_the_fraction():
    uids = [f"{i:032x}" for i in range(4000)]
    splits = [split_of(u, 0.1) for u in uids]
    assert splits == [split_of(u, 0.1) for u in uids]
    assert 0.08 < splits.count("test") / len(uids) < 0.12


def test_journal_keeps_last_row_per_key_and_parquet_opens(tmp_path):
    log = AuditLog(str(tmp_path), "abc")
    log.record([row("u1", "filter", "rejected", rule="bounds", values={"max_abs_coord": 1.9}, animation="Run",
                    animation_index=0, label="textured", split="train", key="u1_0")])
    log.record([row("u1", "filter", "rejected", rule="bounds", values={"max_abs_coord": 1.9}, animation="Run",
                    animation_index=0, label="textured", split="train", key="u1_0"),
                row("u1", "asset", "done", timings={"total": 3.0})])
    rows = log.rows()
    assert len(rows) == 2 and log.finished_uids() == {"u1"}
    resumed = AuditLog(str(tmp_path), "abc")  # a restarted run writes its own segment
    resumed.record([row("u2", "asset", "done")])
    assert len(log.segments()) == 2 and resumed.finished_uids() == {"u1", "u2"}
    assert not [n for n in os.listdir(tmp_path / "audit") if ".tmp-" in n]
    table = pq.read_table(log.write_parquet())  # every row recorded; `final` marks the ones that count
    assert table.num_rows == 4 and table.column("final").to_pylist() == [False, True, True, True]
    assert table.column("value.max_abs_coord").to_pylist().count(1.9) == 2
    assert "filter     rejected  bounds" in summary(rows)
    assert "max_abs_coord = 1.9" in why(rows, "u1") and os.path.exists(os.path.join(tmp_path, "audit.parquet"))


def test_journal_segments_roll_over(tmp_path, monkeypatch):
    from curation import audit

    monkeypatch.setattr(audit, "SEGMENT_ROWS", 3)
    log = AuditLog(str(tmp_path))
    for i in range(7):
        log.record([row(f"u{i}", "asset", "done")])
    assert len(log.segments()) == 3 and [r["uid"] for r in log.rows()] == [f"u{i}" for i in range(7)]


def test_a_torn_journal_line_is_skipped_and_the_row_after_it_kept(tmp_path):
    log = AuditLog(str(tmp_path))
    log.record([row("u1", "asset", "done")])
    seg = tmp_path / log.segments()[0]
    # a kill mid-write tore u2's rows; something then wrote u3's row straight after the torn text
    seg.write_text(seg.read_text() + '{"uid": "u2", "animation": null, "stage": "fil'
                   + json.dumps(row("u3", "asset", "done")) + "\n" + '{"uid": "u4", "sta')
    with pytest.warns(UserWarning, match="torn journal line"):
        state = resume_state(AuditLog(str(tmp_path)).iter_rows())
    assert set(state.finished) == {"u1", "u3"}  # u2 and u4 are processed again; u3 is not lost


def test_attempts_are_all_kept_and_the_last_one_decides(tmp_path):
    log = AuditLog(str(tmp_path))
    log.record([{**r, "attempt": 1} for r in (row("u1", "download", "error", rule="download_failed"),
                                              row("u1", "asset", "error", rule="download_failed",
                                                  values={"transient": True}))])
    log.record([{**r, "attempt": 1} for r in (row("u2", "render", "error", rule="crash"),
                                              row("u2", "asset", "error", rule="crash", values={"transient": False}))])
    state = resume_state(log.iter_rows())
    assert state.done(None) == {"u1", "u2"} and state.done("transient") == {"u2"} and state.done("all") == set()
    log.record([{**r, "attempt": 2} for r in (
        row("u1", "filter", "accepted", key="u1_0", label="textured", split="train", values={"staged_bytes": 7},
            animation_index=0),
        row("u1", "asset", "done"))])
    state = resume_state(log.iter_rows())
    assert state.done("transient") == {"u1", "u2"} and state.accepted_keys({"u1"}) == {"u1_0": ("textured", "train", 7)}
    final = latest(log.iter_rows())
    assert [(r["uid"], r["stage"], r["status"]) for r in final if r["uid"] == "u1"] == [
        ("u1", "filter", "accepted"), ("u1", "asset", "done")]  # the first attempt's download error is history
    assert pq.read_table(log.write_parquet()).column("attempt").to_pylist() == [1, 1, 1, 1, 2, 2]
    assert "download  error" not in summary(final)


def test_the_report_samples_a_fixed_number_of_clips_per_rule(tmp_path):
    import dataclasses

    from curation.audit_report import SHEET_SAMPLES, write_report
    from curation.clip_processing import thumb_path
    from curation.pipeline_config import Pipeline
    from dataset.storage import Store

    store = Store(str(tmp_path))
    store.write("run.json", json.dumps({"pipeline": dataclasses.asdict(Pipeline(name="big")),
                                        "config_hash": "abc"}).encode())
    rows = [row(f"u{i:04d}", "filter", "accepted" if i % 2 else "rejected", rule=None if i % 2 else "bounds",
                key=f"u{i:04d}_0", animation_index=0, values={"bounds_max_abs": 0.5 + i / 1000})
            for i in range(1000)]
    rows += [row(f"m{i:04d}", "metadata", "rejected", rule="license") for i in range(500)]
    for r in rows[:3]:
        store.write(thumb_path(r["key"]), b"png")
    page = open(write_report(store, rows)).read()
    assert f"Accepted clips (500; a sample of {SHEET_SAMPLES})" in page
    assert f"Rejected by bounds (500; a sample of {SHEET_SAMPLES})" in page
    assert page.count("<figure") == 2 * SHEET_SAMPLES
    assert page.count("</td><td>metadata</td>") == SHEET_SAMPLES and "and 452 more metadata / license" in page
    assert page == open(write_report(store, rows)).read()  # the same audit shows the same clips
