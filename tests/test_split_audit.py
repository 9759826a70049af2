import os

import pyarrow.parquet as pq

from curation.audit import AuditLog, row, summary, why
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
    table = pq.read_table(log.write_parquet())
    assert table.num_rows == 3 and table.column("value.max_abs_coord").to_pylist().count(1.9) == 1
    assert "filter     rejected  bounds" in summary(rows)
    assert "max_abs_coord = 1.9" in why(rows, "u1") and os.path.exists(os.path.join(tmp_path, "audit.parquet"))


def test_journal_segments_roll_over(tmp_path, monkeypatch):
    from curation import audit

    monkeypatch.setattr(audit, "SEGMENT_ROWS", 3)
    log = AuditLog(str(tmp_path))
    for i in range(7):
        log.record([row(f"u{i}", "asset", "done")])
    assert len(log.segments()) == 3 and [r["uid"] for r in log.rows()] == [f"u{i}" for i in range(7)]
