"""Pack clip samples into WebDataset shards, exactly once, atomically, with a manifest, through a
`Store` (a local folder or an object store), so shards are assembled where the data is.

Workers stage each accepted clip as a one-sample tar at `staging/<label>/<split>/<key>.tar`. The
driver's `ShardPlanner` only decides which staged keys go into which shard
(`shards/<label>/<split>-NNNNNN.tar`, `max_samples` each, keys sorted within a shard); `write_shard`
(a Ray task, on any node) streams those staged samples from the store into the shard and puts it at
its final name in one atomic write; the planner then commits the shard to `manifest.json` (keys,
counts, bytes, sha256) and only after that deletes the staged samples. The manifest is the truth:
on start, `reconcile` deletes shards it does not list, staged samples it already holds, and staged
samples of assets the audit does not record as finished (they are rendered again), so every accepted
clip ends in exactly one shard whatever point a run was killed at.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

import webdataset as wds

from dataset.storage import TMP_MARK, Store

MANIFEST = "manifest.json"
STAGING, SHARDS = "staging", "shards"


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


def stage_sample(store: Store, label: str, split: str, sample: dict) -> str:
    """Write one accepted clip where the packer will find it (one atomic write)."""
    rel = staged_path(label, split, sample["__key__"])
    store.write(rel, encode_tar([sample]))
    return rel


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
    """The driver's side of packing: the manifest, the staged keys not yet packed, and which keys
    go into which shard. It reads and writes no sample bytes."""

    def __init__(self, store: Store, max_samples: int = 64):
        self.store = store
        self.max_samples = max_samples
        self.manifest = json.loads(store.read(MANIFEST)) if store.exists(MANIFEST) else {"version": 1, "shards": []}
        self.packed = {k for s in self.manifest["shards"] for k in s["keys"]}
        self.pending: dict[tuple[str, str], set[str]] = {}
        self._taken = {s["path"] for s in self.manifest["shards"]}  # listed or being written

    @property
    def url(self) -> str:
        return self.store.url(MANIFEST)

    def reconcile(self, finished_accepted: set[str]) -> dict:
        """Undo what a killed run left half done. `finished_accepted`: the keys the audit records as
        accepted clips of finished assets; staged samples of any other key are deleted (their asset
        is processed again), the rest become pending. Returns counts of what was removed."""
        listed = {s["path"] for s in self.manifest["shards"]}
        shards = self.store.list(SHARDS)
        unlisted = [p for p in shards if p not in listed]
        staged = self.store.list(STAGING)
        drop, keep = [], []
        for p in staged:
            key = p.rsplit("/", 1)[-1][: -len(".tar")]
            if TMP_MARK in p or not p.endswith(".tar") or key in self.packed or key not in finished_accepted:
                drop.append(p)
            else:
                keep.append(p)
        self.store.delete(unlisted + drop)
        for p in keep:
            _, label, split, name = p.split("/")
            self.add(label, split, name[: -len(".tar")])
        return {"unlisted_shards": len(unlisted), "dropped_staged": len(drop), "pending": len(keep)}

    def add(self, label: str, split: str, key: str) -> None:
        if key not in self.packed:
            self.pending.setdefault((label, split), set()).add(key)

    def next_shards(self, final: bool = False) -> list[tuple[str, str, str, list[str]]]:
        """(shard path, label, split, keys) for every full shard the pending keys make (and, when
        final, the last partial one per label and split); those keys stop being pending."""
        out = []
        for (label, split), keys in sorted(self.pending.items()):
            while len(keys) >= self.max_samples or (final and keys):
                batch = sorted(keys)[: self.max_samples]
                keys.difference_update(batch)
                out.append((self._name(label, split), label, split, batch))
        return out

    def _name(self, label: str, split: str) -> str:
        """The lowest free shard number: a shard a killed run never committed is written again under
        its own number, so shard names stay contiguous (brace patterns keep working)."""
        i = 0
        while f"{SHARDS}/{label}/{split}-{i:06d}.tar" in self._taken:
            i += 1
        rel = f"{SHARDS}/{label}/{split}-{i:06d}.tar"
        self._taken.add(rel)
        return rel

    def commit(self, entry: dict) -> None:
        """List a written shard in the manifest, then delete its staged samples."""
        entry = {k: v for k, v in entry.items() if k != "seconds"}
        self.manifest["shards"].append(entry)
        self.store.write(MANIFEST, json.dumps(self.manifest, indent=1).encode())
        self.packed.update(entry["keys"])
        self.store.delete([staged_path(entry["label"], entry["split"], k) for k in entry["keys"]])

    def release(self, rel: str, label: str, split: str, keys: list[str]) -> None:
        """A shard that could not be written: its keys are pending again, its name free again."""
        self._taken.discard(rel)
        self.pending.setdefault((label, split), set()).update(keys)
