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
    with open(log.journal, "a") as f:
        f.write('{"uid": "u2", "sta')  # a line torn by a kill
    rows = log.rows()
    assert len(rows) == 2 and log.finished_uids() == {"u1"}
    table = pq.read_table(log.write_parquet())
    assert table.num_rows == 2 and table.column("value.max_abs_coord").to_pylist().count(1.9) == 1
    assert "filter     rejected  bounds" in summary(rows)
    assert "max_abs_coord = 1.9" in why(rows, "u1") and os.path.exists(os.path.join(tmp_path, "audit.parquet"))
