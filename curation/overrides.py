"""A person's decisions over the rules': `OUT/overrides.jsonl`, one JSON object per line, appended by
`driveanymesh audit OUT override` and honoured by the next `run` into OUT.

    {"key": "fox_0", "uid": "fox", "decision": "reject", "reason": "a scan, not an object", "by": "ana",
     "at": "2026-12-04T15:00:00+0000"}

`key` is a clip key (that clip) or a uid (every clip of the asset); `uid` is the asset it belongs to,
resolved from the run's audit when the override is made. The last line for a key wins, so a decision
is changed by appending another, and the file is the history. Only the filter stage's decisions are
overridden: a clip that was rendered and judged. An accepted clip rejected by a person leaves its
shard; a clip a rule rejected and a person accepts is rendered again and packed. The audit row keeps
the rule's verdict beside the person's (`override`: decision, reason, by, at, and the rule's
`rule_status` and `rule`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from dataset.storage import Store

OVERRIDES = "overrides.jsonl"
DECISIONS = ("accept", "reject")
FIELDS = ("key", "uid", "decision", "reason", "by", "at")


class OverridesError(ValueError):
    pass


@dataclass(frozen=True)
class Override:
    key: str
    uid: str
    decision: str
    reason: str
    by: str = ""
    at: str = ""

    def record(self) -> dict:
        return asdict(self)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def parse(text: str, where: str) -> list[Override]:
    """Every override of an overrides file's text, in order; OverridesError naming the line otherwise."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as exc:
            raise OverridesError(f"{where} line {n}: not JSON ({exc})") from None
        out.append(checked(d, f"{where} line {n}"))
    return out


def checked(d, where: str) -> Override:
    if not isinstance(d, dict):
        raise OverridesError(f"{where}: expected an object with {', '.join(FIELDS)}")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise OverridesError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(FIELDS)})")
    for name in ("key", "uid", "decision", "reason"):
        if not isinstance(d.get(name), str) or not d[name].strip():
            raise OverridesError(f"{where}: {name!r} must be a non-empty string")
    if d["decision"] not in DECISIONS:
        raise OverridesError(f"{where}: decision must be one of {DECISIONS}, got {d['decision']!r}")
    for name in ("by", "at"):
        if not isinstance(d.get(name, ""), str):
            raise OverridesError(f"{where}: {name!r} must be a string")
    return Override(**{k: d.get(k, "") for k in FIELDS})


def read(store: Store) -> dict[str, Override]:
    """key -> its override in force (the file's last line for it); {} without a file."""
    if not store.exists(OVERRIDES):
        return {}
    return {o.key: o for o in parse(store.read(OVERRIDES).decode("utf-8"), store.url(OVERRIDES))}


def append(store: Store, items: list[Override]) -> None:
    """Add `items` to the file (one atomic write of the whole file through the store: an object store
    has no appends). The file as it is must parse: a malformed one is refused, and nothing written."""
    before = store.read(OVERRIDES).decode("utf-8") if store.exists(OVERRIDES) else ""
    parse(before, store.url(OVERRIDES))
    if before and not before.endswith("\n"):
        before += "\n"
    store.write(OVERRIDES, (before + "".join(json.dumps(o.record()) + "\n" for o in items)).encode())


def for_clip(overrides: dict[str, Override], uid: str, key: str) -> Override | None:
    """The override in force for a clip: its own, else its asset's."""
    return overrides.get(key) or overrides.get(uid)


def of_asset(overrides: dict[str, Override], uid: str) -> dict[str, dict]:
    """The overrides of one asset (its own and its clips'), as the render task receives them."""
    return {k: o.record() for k, o in overrides.items() if o.uid == uid}


def apply(row: dict, override: dict | None, decided_before_render: bool) -> bool:
    """Set the person's decision on a filter row (the rule's verdict kept under `override`); returns
    whether the clip is accepted now."""
    accepted = row["status"] == "accepted"
    if override is None:
        return accepted
    row["override"] = {**override, "rule_status": row["status"], "rule": row.get("rule")}
    if override["decision"] == "reject" and accepted:
        row["status"], row["rule"] = "rejected", "override"
        row["reasons"] = [f"override: {override['reason']}"] + list(row.get("reasons") or [])
        return False
    if override["decision"] == "accept" and not accepted:
        if decided_before_render:  # no images were rendered: nothing to pack
            row["override"]["not_applied"] = "decided before rendering: the asset is rendered on the next run"
            return False
        row["status"] = "accepted"
        return True
    return accepted
