"""The audit log: one row per (uid, animation, stage) with status, deciding rule, reasons and every
measured value, so a user can answer "why was X dropped" and "how many did each rule drop".

Rows go to the journal as results arrive, through the run's `Store`: `audit/journal-NNNNNN.jsonl`
segments of at most `SEGMENT_ROWS` rows, a new one per run. On a POSIX filesystem rows are appended
as they come (O(1) per asset; a killed driver loses none) and fsynced at most every `flush_every_s`;
a kill can tear at most the last line, which the reader skips with a warning (its asset has no
finished row, so it is done again), and since a restarted run writes a new segment the next row is
never joined to it. An object store has no appends: there rows are buffered and the current segment
is rewritten whole (one atomic PUT) at most every `flush_every_s`. Either way every row is durable
before a shard holding its clip is committed (`flush`), so the manifest never holds a clip the
journal lacks.

Every attempt is kept: a row carries the `attempt` it belongs to (an asset processed again after an
error, or after a kill, gets the next number). `latest` keeps the rows of each asset's last attempt,
the last one per (animation, stage): what the parquet marks `final`, the summary counts and a resume
trusts. Stages: metadata (source rules), download, render (failures and skipped animations), filter
(accepted / rejected clips, with the label and split), asset (the marker that an asset is finished,
with its timings, node and host; on an error its `rule` is the first error and `values.transient`
says whether a later run may retry it: see TRANSIENT).
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dataset.storage import Store

JOURNAL_DIR, TABLE = "audit", "audit.parquet"
SEGMENT_ROWS = 2000  # bounds what one object-store flush rewrites
# Errors that say nothing about the asset: the network, a lost node, a busy machine, the output
# store failing (see curation/task_errors.py). `run --retry-errors` processes assets that ended in one
# of these again (`--retry-errors all`: any error). Not `error`, a task that raised otherwise (a bug):
# retrying does not heal it.
TRANSIENT = ("download_failed", "worker_lost", "timeout", "out_of_memory", "storage_error")
COLUMNS = ["uid", "animation", "animation_index", "stage", "status", "rule", "reasons", "label", "split",
           "key", "values", "timings", "node_id", "host", "config_hash", "attempt", "recorded_at",
           "decided_before_render", "override"]


def row(uid: str, stage: str, status: str, rule: str | None = None, reasons: list[str] | None = None,
        values: dict | None = None, animation: str | None = None, animation_index: int | None = None,
        **extra) -> dict:
    # uid first: the reader finds a row that follows a torn line by it
    return {"uid": uid, "animation": animation, "animation_index": animation_index, "stage": stage,
            "status": status, "rule": rule, "reasons": reasons or [], "values": values or {}, **extra}


class AuditLog:
    def __init__(self, out: Store | str, config_hash: str = "", flush_every_s: float = 2.0):
        self.store = out if isinstance(out, Store) else Store(out)
        self.config_hash = config_hash
        self.flush_every_s = flush_every_s
        self.torn = 0                     # torn lines the last read skipped
        self._segment: str | None = None
        self._lines: list[str] = []       # object store: the current segment's lines, to rewrite it
        self._count = 0                   # rows in the current segment
        self._file = None                 # the current segment, open for appending (POSIX)
        self._dirty, self._flushed = False, 0.0

    def segments(self) -> list[str]:
        return [p for p in self.store.list(JOURNAL_DIR) if p.rsplit("/", 1)[-1].startswith("journal-")
                and p.endswith(".jsonl")]

    def _next_segment(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._segment is None:
            done = self.segments()
            self._n = int(done[-1].rsplit("-", 1)[-1].split(".")[0]) + 1 if done else 0
        else:
            self._n += 1
        self._segment, self._lines, self._count = f"{JOURNAL_DIR}/journal-{self._n:06d}.jsonl", [], 0
        if self.store.local:
            path = self.store.url(self._segment)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def record(self, rows: list[dict]) -> None:
        if self._segment is None or self._count >= SEGMENT_ROWS:
            self._next_segment()
        now = round(time.time(), 3)  # when the driver recorded it: progress over time, per node
        lines = [json.dumps({**r, "config_hash": self.config_hash, "recorded_at": now}) + "\n" for r in rows]
        self._count += len(lines)
        if self._file is not None:  # one write per asset: in the OS's hands at once, so a killed driver loses none
            self._file.write("".join(lines))
            self._file.flush()
        else:
            self._lines += lines
        self._dirty = True
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Make the recorded rows durable if the last time is `flush_every_s` old (the driver also
        calls this while it waits): fsync on POSIX (what only a machine crash could lose), the
        segment's PUT on an object store (what a killed driver could lose: its assets are done again)."""
        if self._dirty and time.monotonic() - self._flushed >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Every recorded row, durable now (before a shard that holds them is committed)."""
        if self._dirty and self._segment is not None:
            if self._file is not None:
                os.fsync(self._file.fileno())
            else:
                self.store.write(self._segment, "".join(self._lines).encode())
            self._dirty = False
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def iter_rows(self):
        """Every journal row in the order recorded, all attempts; torn lines skipped with a warning."""
        self.torn = 0
        for seg in self.segments():
            for line in self.store.read(seg).decode("utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                    continue
                except ValueError:
                    pass
                self.torn += 1
                warnings.warn(f"{self.store.url(seg)}: skipped a torn journal line (a run was killed while "
                              f"writing it; that asset is processed again): {line[:120]!r}", stacklevel=2)
                # a row written straight after the torn text (no newline between) is kept
                at = line.find('{"uid": ', 1)
                if at > 0:
                    try:
                        yield json.loads(line[at:])
                    except ValueError:
                        pass

    def rows(self) -> list[dict]:
        """The final rows (see `latest`)."""
        return latest(self.iter_rows())

    def finished_uids(self) -> set[str]:
        return {r["uid"] for r in self.rows() if r["stage"] == "asset"}

    def write_parquet(self, final: "Final | None" = None) -> str:
        """`audit.parquet`: every attempt, with `final` marking the rows `latest` keeps. Streamed
        segment by segment (a row group each), so its memory does not grow with the journal.
        `final`: the `scan` of this journal when the caller has made it (else it is made here)."""
        final = scan(self.iter_rows()) if final is None else final
        schema = pa.schema([(c, pa.list_(pa.string()) if c == "reasons" else
                             pa.int64() if c in ("animation_index", "attempt") else
                             pa.float64() if c == "recorded_at" else
                             pa.bool_() if c == "decided_before_render" else pa.string()) for c in COLUMNS]
                           + [("final", pa.bool_())] + [(f"value.{k}", pa.float64()) for k in final.scalars])
        with self.store.writer(TABLE) as f, pq.ParquetWriter(f, schema) as writer:
            batch, pos = [], 0
            for r in self.iter_rows():
                batch.append((pos in final.positions, r))
                pos += 1
                if len(batch) == SEGMENT_ROWS:
                    writer.write_table(_table(batch, schema, final.scalars))
                    batch = []
            if batch or not pos:
                writer.write_table(_table(batch, schema, final.scalars))
        return self.store.url(TABLE)


def _table(batch: list[tuple[bool, dict]], schema: pa.Schema, scalars: list[str]) -> pa.Table:
    rows = [r for _, r in batch]
    cols = {c: [r.get(c) for r in rows] for c in COLUMNS}
    cols["attempt"] = [r.get("attempt", 1) for r in rows]
    # values and timings vary per rule: JSON text keeps every value; the measured scalars are
    # also flattened to typed columns (value.<name>) so DuckDB/pandas can filter and plot them.
    cols["values"] = [json.dumps(v or {}) for v in cols["values"]]
    cols["timings"] = [json.dumps(v or {}) for v in cols["timings"]]
    cols["override"] = [json.dumps(v) if v else None for v in cols["override"]]  # a person's decision, or null
    cols["final"] = [f for f, _ in batch]
    for k in scalars:
        cols[f"value.{k}"] = [_num((r.get("values") or {}).get(k)) for r in rows]
    return pa.table({name: pa.array(cols[name], schema.field(name).type) for name in schema.names}, schema=schema)


@dataclass
class Final:
    rows: list              # the rows `latest` keeps, in recorded order (SlimRow when asked)
    positions: set[int]     # their positions in the journal, as iter_rows yields it
    scalars: list[str]      # every scalar value name in the journal (the parquet's value.* columns)


class SlimRow:
    """A final row as the report, the summary and the check read it (`r["stage"]`, `r.get("key")`),
    in a fraction of a dict's memory: slots, shared strings, only the values asked for."""

    __slots__ = ("uid", "animation", "animation_index", "stage", "status", "rule", "reasons", "label", "split",
                 "key", "attempt", "override", "_names", "_values")

    def __init__(self, r: dict, names: tuple[str, ...]):
        for k in ("uid", "animation", "stage", "status", "rule", "label", "split"):
            setattr(self, k, _i(r.get(k)))
        self.animation_index, self.key, self.attempt = r.get("animation_index"), r.get("key"), r.get("attempt", 1)
        self.reasons = tuple(r.get("reasons") or ())
        self.override = r.get("override")  # None for all but the few rows a person decided
        values = r.get("values") or {}
        self._names = names
        self._values = tuple(values.get(n) for n in names) if any(n in values for n in names) else None

    def get(self, name: str, default=None):
        if name == "values":
            return {n: v for n, v in zip(self._names, self._values or ()) if v is not None}
        return getattr(self, name, default) if name in self.__slots__ and not name.startswith("_") else default

    def __getitem__(self, name: str):
        if name in self.__slots__ and not name.startswith("_") or name == "values":
            return self.get(name)
        raise KeyError(name)


def scan(rows, keep_values: set[str] | None = None) -> Final:
    """One pass: the final rows (see `latest`). With `keep_values`, each kept row is a `SlimRow`
    holding only those values, so a 50k-asset journal is held in tens of MB, not as full rows."""
    last: dict[tuple, tuple[int, dict]] = {}
    attempt: dict[str, int] = {}
    scalars: set[str] = set()
    names = tuple(sorted(keep_values or ()))
    for pos, r in enumerate(rows):
        values = r.get("values") or {}
        scalars.update(k for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        a = 0 if r["stage"] == "metadata" else r.get("attempt", 1)
        if a and a > attempt.get(r["uid"], 0):
            attempt[r["uid"]] = a
        key = (r["uid"], r.get("animation_index"), r["stage"], r.get("key"))  # key: windows of one animation
        last.pop(key, None)  # keeps recorded order
        last[key] = (pos, r if keep_values is None else SlimRow(r, names))
    kept = [(pos, r) for pos, r in last.values()
            if r["stage"] == "metadata" or r.get("attempt", 1) == attempt.get(r["uid"])]
    return Final(rows=[r for _, r in kept], positions={pos for pos, _ in kept}, scalars=sorted(scalars))


def latest(rows) -> list[dict]:
    """The rows of each asset's last attempt, the last one per (animation index, stage, clip key), in the
    order recorded; metadata rows (the source's decisions, recorded again by every run) the last
    one per uid."""
    return scan(rows).rows


@dataclass
class ResumeState:
    """What a restarted run needs from the journal, built in one pass and kept small."""
    attempts: dict[str, int] = field(default_factory=dict)         # uid -> last attempt number
    finished: dict[str, tuple] = field(default_factory=dict)       # uid -> its final asset row's (status, transient)
    accepted: dict[str, dict | tuple] = field(default_factory=dict)  # uid -> ((key, label, split, bytes), ...)
    metadata: set[str] = field(default_factory=set)                # uids with a metadata row
    # uid -> {clip key: (override key, at) of the override its filter row carries, or None}
    clips: dict[str, dict] = field(default_factory=dict)
    rows: int = 0

    def done(self, retry: str | None = None) -> set[str]:
        """Uids that count as finished. `retry`: "transient" or "all" errors are not."""
        def again(f):
            return f[0] == "error" and (retry == "all" or (retry == "transient" and f[1]))
        return {u for u, f in self.finished.items() if not again(f)}

    def accepted_keys(self, uids: set[str]) -> dict[str, tuple]:
        """key -> (label, split, staged bytes) of the accepted clips of `uids`."""
        return {k: (label, split, n) for u in uids for k, label, split, n in self.accepted.get(u, ())}


def resume_state(rows) -> ResumeState:
    s = ResumeState()
    for r in rows:
        s.rows += 1
        uid = r["uid"]
        if r["stage"] == "metadata":
            s.metadata.add(uid)
            continue
        a = r.get("attempt", 1)
        if a > s.attempts.get(uid, 0):  # a new attempt replaces what the old one decided
            s.attempts[uid] = a
            s.finished.pop(uid, None)
            s.accepted.pop(uid, None)
            s.clips.pop(uid, None)
        elif a < s.attempts[uid]:
            continue
        if r["stage"] == "filter" and r.get("key"):
            o = r.get("override")
            # an override recorded as not applied (no images to pack) still wants its asset done again
            s.clips.setdefault(uid, {})[r["key"]] = ((o.get("key"), o.get("at"))
                                                     if isinstance(o, dict) and not o.get("not_applied") else None)
            keys = s.accepted.setdefault(uid, {})
            if r["status"] == "accepted":
                keys[r["key"]] = (_i(r.get("label")), _i(r.get("split")),
                                  (r.get("values") or {}).get("staged_bytes", 0))
            else:
                keys.pop(r["key"], None)
        elif r["stage"] == "asset":
            s.finished[uid] = (_i(r["status"]), bool((r.get("values") or {}).get("transient")))
    for uid in list(s.clips):
        if uid not in s.finished:
            del s.clips[uid]
    for uid in list(s.accepted):  # an attempt without its asset row was cut short: nothing of it counts
        if uid not in s.finished or not s.accepted[uid]:
            del s.accepted[uid]
        else:  # tuples, not dicts: a 50k-asset journal's state stays small
            s.accepted[uid] = tuple((k, *v) for k, v in s.accepted[uid].items())
    return s


def _i(text):
    """One shared copy of a string that repeats in every row (status, label, split, rule)."""
    return sys.intern(text) if isinstance(text, str) else text


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
    overridden = Counter((r["override"].get("rule_status"), r["status"]) for r in rows
                         if r["stage"] == "filter" and r.get("override"))
    if overridden:
        lines += ["", "overridden by a person (rules' decision -> final):"]
        lines += [f"  {a:<9} -> {b:<9} {n:>6}" for (a, b), n in sorted(overridden.items())]
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
        # a traceback's lines under the first one, indented
        lines += ["    reason: " + str(x).replace("\n", "\n" + " " * 12) for x in r.get("reasons") or []]
        if r.get("override"):  # the person's decision beside the rules'
            o = r["override"]
            lines.append(f"    rules:    {o.get('rule_status')}" + (f" ({o['rule']})" if o.get("rule") else ""))
            lines.append(f"    override: {o.get('decision')} by {o.get('by') or 'unknown'} at {o.get('at') or '?'}: "
                         f"{o.get('reason')}" + (f" (not applied: {o['not_applied']})" if o.get("not_applied") else ""))
        for k, v in sorted((r.get("values") or {}).items()):
            lines.append(f"    {k} = {json.dumps(v)}")
        if r.get("timings"):
            lines.append("    timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in sorted(r["timings"].items())))
    return "\n".join(lines)
