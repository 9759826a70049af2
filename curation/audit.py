"""The audit log: one row per (uid, animation, stage) with status, deciding rule, reasons and every
measured value, so a user can answer "why was X dropped" and "how many did each rule drop".

Rows go to the journal as results arrive, through the run's `Store` (a folder or an object store):
`audit/journal-NNNNNN.jsonl` segments, each rewritten whole (one atomic write) whenever rows are added
until it holds `SEGMENT_ROWS`, then a new one starts; a restarted run starts a new segment. A kill
therefore loses no recorded decision and never leaves a torn line, and an object store (no appends)
needs no special case. `audit.parquet` is rebuilt from the journal, keeping the last row per (uid,
animation, stage), so an asset redone after a kill is counted once. Stages: metadata (source rules),
download, render (failures and skipped animations), filter (accepted / rejected clips, with the
label and split), asset (the marker that an asset is finished, with its timings, node and host).
"""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from dataset.storage import Store

JOURNAL_DIR, TABLE = "audit", "audit.parquet"
SEGMENT_ROWS = 2000  # bounds what one record() rewrites
COLUMNS = ["uid", "animation", "animation_index", "stage", "status", "rule", "reasons", "label", "split",
           "key", "values", "timings", "node_id", "host", "config_hash"]


def row(uid: str, stage: str, status: str, rule: str | None = None, reasons: list[str] | None = None,
        values: dict | None = None, animation: str | None = None, animation_index: int | None = None,
        **extra) -> dict:
    return {"uid": uid, "animation": animation, "animation_index": animation_index, "stage": stage,
            "status": status, "rule": rule, "reasons": reasons or [], "values": values or {}, **extra}


class AuditLog:
    def __init__(self, out: Store | str, config_hash: str = ""):
        self.store = out if isinstance(out, Store) else Store(out)
        self.config_hash = config_hash
        self._segment: str | None = None
        self._lines: list[str] = []

    def segments(self) -> list[str]:
        return [p for p in self.store.list(JOURNAL_DIR) if p.rsplit("/", 1)[-1].startswith("journal-")
                and p.endswith(".jsonl")]

    def record(self, rows: list[dict]) -> None:
        if self._segment is None or len(self._lines) >= SEGMENT_ROWS:
            done = self.segments()
            n = int(done[-1].rsplit("-", 1)[-1].split(".")[0]) + 1 if done else 0
            self._segment, self._lines = f"{JOURNAL_DIR}/journal-{n:06d}.jsonl", []
        self._lines += [json.dumps({**r, "config_hash": self.config_hash}) + "\n" for r in rows]
        self.store.write(self._segment, "".join(self._lines).encode())

    def rows(self) -> list[dict]:
        """Journal rows in the order recorded, the last one per (uid, animation index, stage)."""
        latest: dict[tuple, dict] = {}
        for seg in self.segments():
            for line in self.store.read(seg).decode().splitlines():
                r = json.loads(line)
                latest[(r["uid"], r.get("animation_index"), r["stage"])] = r
        return list(latest.values())

    def finished_uids(self) -> set[str]:
        return {r["uid"] for r in self.rows() if r["stage"] == "asset"}

    def write_parquet(self, rows: list[dict] | None = None) -> str:
        """`rows`: the journal's rows when the caller has read them already."""
        rows = self.rows() if rows is None else rows
        cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
        # values and timings vary per rule: JSON text keeps every value; the measured scalars are
        # also flattened to typed columns (value.<name>) so DuckDB/pandas can filter and plot them.
        cols["values"] = [json.dumps(v or {}) for v in cols["values"]]
        cols["timings"] = [json.dumps(v or {}) for v in cols["timings"]]
        scalars = sorted({k for r in rows for k, v in (r.get("values") or {}).items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)})
        table = pa.table({
            **{c: pa.array(cols[c], type=pa.list_(pa.string()) if c == "reasons" else
                           pa.int64() if c == "animation_index" else pa.string()) for c in COLUMNS},
            **{f"value.{k}": pa.array([_num((r.get("values") or {}).get(k)) for r in rows], pa.float64())
               for k in scalars}})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.store.write(TABLE, sink.getvalue().to_pybytes())
        return self.store.url(TABLE)


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summary(rows: list[dict]) -> str:
    """Counts per stage, status and rule, and accepted clips per label and split."""
    from collections import Counter

    by_rule = Counter((r["stage"], r["status"], r.get("rule") or "-") for r in rows if r["stage"] != "asset")
    assets = Counter(r["status"] for r in rows if r["stage"] == "asset")
    kept = Counter((r.get("label"), r.get("split")) for r in rows
                   if r["stage"] == "filter" and r["status"] == "accepted")
    lines = [f"assets: {sum(assets.values())} finished ({assets.get('done', 0)} done, {assets.get('error', 0)} with errors)",
             "", f"{'stage':<10} {'status':<9} {'rule':<24} {'count':>6}"]
    lines += [f"{st:<10} {status:<9} {rule:<24} {n:>6}" for (st, status, rule), n in sorted(by_rule.items())]
    lines += ["", "accepted clips per label and split:"]
    lines += [f"  {label:<12} {split:<6} {n:>6}" for (label, split), n in sorted(kept.items())]
    return "\n".join(lines)


def why(rows: list[dict], uid: str) -> str:
    """The full story of one asset: every row, its rule, reasons and measured values."""
    mine = sorted((r for r in rows if r["uid"] == uid),
                  key=lambda r: (r.get("animation_index") is None, r.get("animation_index") or 0,
                                 ["metadata", "download", "render", "filter", "asset"].index(r["stage"])
                                 if r["stage"] in ("metadata", "download", "render", "filter", "asset") else 9))
    if not mine:
        return f"no audit rows for uid {uid!r}"
    lines = []
    for r in mine:
        anim = f" [{r['animation_index']}] {r['animation']!r}" if r.get("animation") is not None else ""
        extra = " ".join(f"{k}={r[k]}" for k in ("label", "split", "key") if r.get(k))
        lines.append(f"{r['stage']:<9} {r['status']:<9} {r.get('rule') or '-':<22}{anim} {extra}".rstrip())
        lines += [f"    reason: {x}" for x in r.get("reasons") or []]
        for k, v in sorted((r.get("values") or {}).items()):
            lines.append(f"    {k} = {json.dumps(v)}")
        if r.get("timings"):
            lines.append("    timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(r["timings"].items())))
    return "\n".join(lines)
