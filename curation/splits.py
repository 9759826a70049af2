"""`splits.json`: the published uid lists of a run. One entry per accepted asset (uid, label, split,
its clip keys, and the licence, author, name and link its CC licence asks to credit), plus the
pipeline, the config hash and counts per label and split.

Built from the final audit rows the driver already holds at the end of a run (no further read of
the journal), with the same notion of "accepted" as the end-of-run check: accepted filter rows of
finished assets, which that check holds equal to the manifest's keys. Sorted by uid and written
without timestamps, so two runs over the same data give the same bytes. The attribution comes from
the asset row's `values.attribution` (the driver's `attribution`); an asset without one (the demo
and local sources, or a journal written before it was recorded) keeps the keys with null.
"""
from __future__ import annotations

import json
from collections import Counter

from dataset.storage import Store

SPLITS = "splits.json"
LABELS, SPLIT_NAMES = ("textured", "textureless"), ("train", "test")
ATTRIBUTION_FIELDS = ("license", "author", "name", "viewerUrl")
SPLITS_VALUES = {"attribution"}  # the audit values build_splits reads (kept in the driver's slim rows)
# How a uid gets its split, in words; the card quotes the function itself
SPLIT_RULE = ("curation.split.split_of: test when the first 8 bytes of sha256(uid), big-endian, "
              "divided by 2**64 are below test_fraction")


def build_splits(rows, run: dict) -> dict:
    """The content of splits.json from the final audit rows (dicts or the driver's slim rows) and the
    run's run.json (`pipeline`, `config_hash`).

    An asset whose clips carry different labels gets one entry per label (its keys split between
    them, as between the label's shards); the label reads file and scene evidence, the same for
    every clip of an asset, so this is not expected."""
    finished = {r["uid"] for r in rows if r["stage"] == "asset"}
    credit = {r["uid"]: (r.get("values") or {}).get("attribution") or {} for r in rows if r["stage"] == "asset"}
    keys: dict[tuple[str, str], list[str]] = {}
    splits: dict[str, str] = {}
    for r in rows:
        if r["stage"] == "filter" and r["status"] == "accepted" and r["uid"] in finished:
            keys.setdefault((r["uid"], r.get("label")), []).append(r["key"])
            splits[r["uid"]] = r.get("split")
    assets = [{"uid": uid, "label": label, "split": splits[uid], "keys": sorted(ks),
               **{f: credit[uid].get(f) for f in ATTRIBUTION_FIELDS}}
              for (uid, label), ks in sorted(keys.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]
    # clips where a person's decision (overrides.jsonl) differs from the rules': accepted / rejected by it
    overridden = Counter(r["status"] for r in rows if r["stage"] == "filter" and r["uid"] in finished
                         and r.get("override") and r["override"].get("rule_status") != r["status"])
    pipeline = run.get("pipeline") or {}
    return {"pipeline": pipeline.get("name"), "config_hash": run.get("config_hash"),
            "test_fraction": (pipeline.get("split") or {}).get("test_fraction"), "split_rule": SPLIT_RULE,
            "counts": {**split_counts(assets), "overridden": {s: overridden.get(s, 0) for s in ("accepted", "rejected")}},
            "assets": assets}


def split_counts(assets: list[dict]) -> dict:
    """Assets and clips in all, per label and split, and assets per licence ("unknown": none recorded)."""
    per = {label: {split: {"assets": 0, "clips": 0} for split in SPLIT_NAMES} for label in LABELS}
    for a in assets:
        cell = per.setdefault(a["label"], {}).setdefault(a["split"], {"assets": 0, "clips": 0})
        cell["assets"] += 1
        cell["clips"] += len(a["keys"])
    licenses = Counter(a["license"] or "unknown" for a in assets)
    return {"assets": len({a["uid"] for a in assets}), "clips": sum(len(a["keys"]) for a in assets),
            "by_label_split": per, "licenses": dict(sorted(licenses.items()))}


def write_splits(store: Store, splits: dict) -> str:
    """splits.json beside manifest.json, in one atomic write; returns its URL."""
    store.write(SPLITS, (json.dumps(splits, indent=1) + "\n").encode())
    return store.url(SPLITS)


def read_run_info(store: Store) -> dict:
    """The run's run.json (its pipeline settings and config hash)."""
    if not store.exists("run.json"):
        raise ValueError(f"no run.json in {store.root}: is it the --out of a `driveanymesh run`?")
    return json.loads(store.read("run.json"))


def read_splits(store: Store | str) -> dict:
    """The output's splits.json; where there is none (a run still going, or one made before splits.json
    was written), the same content built from its audit journal and run.json."""
    store = store if isinstance(store, Store) else Store(store)
    if store.exists(SPLITS):
        return json.loads(store.read(SPLITS))
    from curation.audit import AuditLog

    rows = AuditLog(store).rows()
    if not rows:
        raise ValueError(f"no {SPLITS} and no audit rows in {store.root}: is it the --out of a `driveanymesh run`?")
    return build_splits(rows, read_run_info(store))


def select_uids(splits: dict, label: str | None = None, split: str | None = None) -> list[str]:
    """The uids of `splits`, sorted, of one label and/or split (None: any)."""
    for name, value, allowed in (("label", label, LABELS), ("split", split, SPLIT_NAMES)):
        if value is not None and value not in allowed:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return sorted({a["uid"] for a in splits["assets"]
                   if (label is None or a["label"] == label) and (split is None or a["split"] == split)})
