"""Pack clip samples into WebDataset shards, exactly once, atomically, with a manifest, through a
`Store` (a local folder or an object store), so shards are assembled where the data is.

Workers stage each accepted clip as a one-sample tar at `staging/<label>/<split>/<key>.tar`. The
driver's `ShardPlanner` only decides which staged keys go into which shard
(`shards/<label>/<split>-NNNNNN.tar`, at most `max_samples` samples and `max_bytes` bytes each, keys
sorted within a shard); `write_shard` (in a Ray actor, on any node) streams those staged samples from the
store into the shard and puts it at its final name in one atomic write. The planner then commits the
shard: its entry (keys, counts, bytes, sha256) is written as one small object,
`manifest.d/<shard path>.json` (O(1) per shard, however many shards came before), and only after
that are the staged samples deleted. `manifest.json` is the consolidated list, rewritten every
`CONSOLIDATE_EVERY` commits and at the end of a run; `load_manifest` is it plus any newer entries, and
is what every reader uses. The entries are the truth: on start, `reconcile` deletes shards they do
not list, staged samples they already hold, and staged samples of assets the audit does not record
as finished (they are rendered again), so every accepted clip ends in exactly one shard whatever
point a run was killed at.
"""
from __future__ import annotations

import hashlib
import heapq
import io
import json
import tarfile
import time

import webdataset as wds

from dataset.storage import TMP_MARK, Store

MANIFEST, ENTRIES = "manifest.json", "manifest.d"
STAGING, SHARDS = "staging", "shards"
CONSOLIDATE_EVERY = 64  # commits between rewrites of manifest.json (bounds what a reader or resume GETs)


def encode_tar(samples: list[dict]) -> bytes:
    """A tar of webdataset samples ({"__key__": key, "<member>": bytes, ...}) in the given order."""
    buf = io.BytesIO()
    with wds.TarWriter(buf, mtime=0) as sink:  # fixed mtime: the same samples give the same bytes
        for s in samples:
            sink.write(s)
    return buf.getvalue()


def read_tar_samples(data: bytes) -> list[dict]:
    """Samples of a tar written by encode_tar, grouped by key (members keep their names)."""
    out: dict[str, dict] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            key, member = m.name.split(".", 1)
            out.setdefault(key, {"__key__": key})[member] = tar.extractfile(m).read()
    return list(out.values())


def staged_path(label: str, split: str, key: str) -> str:
    return f"{STAGING}/{label}/{split}/{key}.tar"


def staged_key(path: str) -> str:
    """The key of a staged sample's path (staged_path's inverse)."""
    return path.rsplit("/", 1)[-1][: -len(".tar")]


def stage_sample(store: Store, label: str, split: str, sample: dict) -> int:
    """Write one accepted clip where the packer will find it (one atomic write); returns its bytes."""
    data = encode_tar([sample])
    store.write(staged_path(label, split, sample["__key__"]), data)
    return len(data)


def entry_path(shard: str) -> str:
    return f"{ENTRIES}/{shard}.json"


def load_manifest(store: Store) -> dict:
    """`manifest.json` plus the entries committed since it was last rewritten, by shard path."""
    manifest = json.loads(store.read(MANIFEST)) if store.exists(MANIFEST) else {"version": 2, "shards": []}
    have = {s["path"] for s in manifest["shards"]}
    for rel in store.list(ENTRIES):
        shard = rel[len(ENTRIES) + 1: -len(".json")]
        if rel.endswith(".json") and TMP_MARK not in rel and shard not in have:
            manifest["shards"].append(json.loads(store.read(rel)))
            have.add(shard)
    manifest["shards"].sort(key=lambda s: s["path"])
    return manifest


class _Hashing:
    """A write-only stream that counts and hashes what passes through it."""

    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def write_shard(store: Store, rel: str, label: str, split: str, keys: list[str]) -> dict:
    """Stream the staged samples of `keys` (in that order) into the shard `rel`: one sample in memory
    at a time, the shard on node-local disk until it is put at its final name. Returns its manifest
    entry (and the seconds it took, which `commit` keeps out of the manifest). Runs wherever Ray places
    it; reads and writes only through `store`."""
    started = time.perf_counter()
    with store.writer(rel) as f:
        out = _Hashing(f)
        with wds.TarWriter(out, mtime=0) as sink:
            for key in keys:
                for sample in read_tar_samples(store.read(staged_path(label, split, key))):
                    sink.write(sample)
    return {"path": rel, "label": label, "split": split, "samples": len(keys), "keys": list(keys),
            "bytes": out.bytes, "sha256": out.sha.hexdigest(), "seconds": time.perf_counter() - started}


class ShardPlanner:
    """The driver's side of packing: the manifest, the staged keys not yet packed (with their sizes),
    and which keys go into which shard. It reads and writes no sample bytes; every call costs O(1)
    per key or shard, never O(everything packed so far)."""

    def __init__(self, store: Store, max_samples: int = 64, max_bytes: int = 0):
        self.store = store
        self.max_samples = max_samples
        self.max_bytes = max_bytes or float("inf")
        self.manifest = load_manifest(store)
        self.packed = {k for s in self.manifest["shards"] for k in s["keys"]}
        self.pending: dict[tuple[str, str], dict[str, int]] = {}  # (label, split) -> key -> staged bytes
        self.writing: set[str] = set()  # keys of shards handed out by next_shards and not yet committed
        self._pending_bytes: dict[tuple[str, str], int] = {}
        self._commits = 0
        # shard numbers per (label, split): the next new one, and numbers freed below it
        self._next: dict[tuple[str, str], int] = {}
        self._free: dict[tuple[str, str], list[int]] = {}
        taken: dict[tuple[str, str], set[int]] = {}
        for s in self.manifest["shards"]:
            taken.setdefault((s["label"], s["split"]), set()).add(int(s["path"].rsplit("-", 1)[1][:-len(".tar")]))
        for group, nums in taken.items():
            self._next[group] = max(nums) + 1
            self._free[group] = sorted(set(range(max(nums) + 1)) - nums)  # a sorted list is a heap

    @property
    def url(self) -> str:
        return self.store.url(MANIFEST)

    def reconcile(self, finished_accepted: dict[str, tuple] | set[str]) -> dict:
        """Undo what a killed run left half done. `finished_accepted`: the keys the audit records as
        accepted clips of finished assets (key -> (label, split, staged bytes)); staged samples of any
        other key are deleted (their asset is processed again), the rest become pending. Returns
        counts of what was removed."""
        listed = {s["path"] for s in self.manifest["shards"]}
        unlisted = [p for p in self.store.list(SHARDS) if p not in listed]
        drop, keep = [], []
        for p in self.store.list(STAGING):
            key = staged_key(p)
            if TMP_MARK in p or not p.endswith(".tar") or key in self.packed or key not in finished_accepted:
                drop.append(p)
            else:
                keep.append(p)
        self.store.delete(unlisted + drop)
        sizes = finished_accepted if isinstance(finished_accepted, dict) else {}
        for p in keep:
            _, label, split, _ = p.split("/")
            key = staged_key(p)
            nbytes = (sizes.get(key) or (None, None, 0))[2] or self.store.size(p)
            self.add(label, split, key, nbytes)
        self.consolidate()  # entries of the previous run go into manifest.json; a fresh start point
        return {"unlisted_shards": len(unlisted), "dropped_staged": len(drop), "pending": len(keep)}

    def add(self, label: str, split: str, key: str, nbytes: int = 0) -> bool:
        """A staged key to pack; False if it is packed already (its staged copy is then surplus)."""
        if key in self.packed:
            return False
        group = (label, split)
        keys = self.pending.setdefault(group, {})
        if key not in keys:
            keys[key] = nbytes
            self._pending_bytes[group] = self._pending_bytes.get(group, 0) + nbytes
        return True

    def knows(self, key: str) -> bool:
        """Whether `key`'s staged sample is this planner's: packed, pending or being written."""
        return key in self.packed or key in self.writing or any(key in keys for keys in self.pending.values())

    def _full(self, group) -> bool:
        return len(self.pending[group]) >= self.max_samples or self._pending_bytes[group] >= self.max_bytes

    def next_shards(self, final: bool = False) -> list[tuple[str, str, str, list[str]]]:
        """(shard path, label, split, keys) for every full shard the pending keys make (and, when
        final, the last partial one per label and split); those keys stop being pending. A shard
        takes keys in sorted order while it stays within both bounds (a single sample larger than
        `max_bytes` is a shard of its own)."""
        out = []
        for group, keys in sorted(self.pending.items()):
            while keys and (final or self._full(group)):
                batch, size = [], 0
                for key in sorted(keys):
                    if batch and (len(batch) == self.max_samples or size + keys[key] > self.max_bytes):
                        break
                    batch.append(key)
                    size += keys[key]
                for key in batch:
                    self._pending_bytes[group] -= keys.pop(key)
                self.writing.update(batch)
                out.append((self._name(*group), group[0], group[1], batch))
        return out

    def _name(self, label: str, split: str) -> str:
        """The lowest free shard number: a shard a killed run never committed is written again under
        its own number, so shard names stay contiguous (brace patterns keep working)."""
        group = (label, split)
        free = self._free.setdefault(group, [])
        if free:
            i = heapq.heappop(free)
        else:
            i = self._next.get(group, 0)
            self._next[group] = i + 1
        return f"{SHARDS}/{label}/{split}-{i:06d}.tar"

    def commit(self, entry: dict) -> None:
        """List a written shard (one small object), then delete its staged samples."""
        entry = {k: v for k, v in entry.items() if k != "seconds"}
        self.store.write(entry_path(entry["path"]), json.dumps(entry).encode())
        self.manifest["shards"].append(entry)
        self.packed.update(entry["keys"])
        self.writing.difference_update(entry["keys"])
        self.store.delete([staged_path(entry["label"], entry["split"], k) for k in entry["keys"]])
        self._commits += 1
        if self._commits % CONSOLIDATE_EVERY == 0:
            self.consolidate()

    def consolidate(self) -> None:
        """Rewrite manifest.json with every committed shard, then drop the entries it now holds."""
        entries = self.store.list(ENTRIES)
        self.manifest["shards"].sort(key=lambda s: s["path"])
        self.store.write(MANIFEST, json.dumps(self.manifest, indent=1).encode())
        self.store.delete(entries)

    def remove(self, keys: set[str]) -> list[str]:
        """Take `keys` out of the shards that hold them (clips rejected after they were packed: a
        person's override): each such shard is written again without them under its own name and its
        manifest entry replaced; one left with no sample is dropped (the manifest first, then the
        file; its number is the next shard's of its group). The whole shard passes through the
        driver's memory once. Returns the shards rewritten or dropped."""
        changed, emptied = [], []
        for i, s in enumerate(self.manifest["shards"]):
            if not keys.intersection(s["keys"]):
                continue
            kept = [k for k in s["keys"] if k not in keys]
            self.packed.difference_update(set(s["keys"]) - set(kept))
            changed.append(s["path"])
            if not kept:
                emptied.append(i)
                continue
            samples = {x["__key__"]: x for x in read_tar_samples(self.store.read(s["path"]))}
            with self.store.writer(s["path"]) as f:
                out = _Hashing(f)
                with wds.TarWriter(out, mtime=0) as sink:
                    for key in kept:
                        sink.write(samples[key])
            self.manifest["shards"][i] = {**s, "samples": len(kept), "keys": kept, "bytes": out.bytes,
                                          "sha256": out.sha.hexdigest()}
        gone = [self.manifest["shards"][i] for i in emptied]
        self.manifest["shards"] = [s for i, s in enumerate(self.manifest["shards"]) if i not in set(emptied)]
        if changed:
            self.consolidate()
        for s in gone:
            self.store.delete([s["path"]])
            heapq.heappush(self._free.setdefault((s["label"], s["split"]), []),
                           int(s["path"].rsplit("-", 1)[1][:-len(".tar")]))
        return changed
