"""Pack clip samples into WebDataset shards, exactly once, atomically, with a manifest.

Workers stage each accepted clip as a one-sample tar under `staging/<label>/<split>/<key>.tar`
(written under a temporary name, then renamed). The packer moves staged samples into
`shards/<label>/<split>-NNNNNN.tar` in key order, `max_samples` per shard: each shard is written
under a temporary name and renamed, then `manifest.json` (shards, sample counts, keys, sha256) is
replaced atomically, then the staged files are deleted. The manifest is the truth: after a kill at any
point, `reconcile()` deletes shard files the manifest does not list and staged samples it already
holds, so packing again writes every sample exactly once.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import webdataset as wds

MANIFEST = "manifest.json"


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to `path` under a temporary name, fsync, rename: readers see all of it or none."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def stage_sample(out_dir: str, label: str, split: str, sample: dict) -> str:
    """Write one accepted clip where the packer will find it (atomic: temporary name, rename)."""
    d = os.path.join(out_dir, "staging", label, split)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{sample['__key__']}.tar")
    atomic_write(path, encode_tar([sample]))
    return path


class ShardPacker:
    def __init__(self, out_dir: str, max_samples: int = 64):
        self.out_dir = out_dir
        self.max_samples = max_samples
        self.manifest = self._load()

    @property
    def path(self) -> str:
        return os.path.join(self.out_dir, MANIFEST)

    def _load(self) -> dict:
        if os.path.exists(self.path):
            with open(self.path) as f:
                return json.load(f)
        return {"version": 1, "shards": []}

    def packed_keys(self) -> set[str]:
        return {k for s in self.manifest["shards"] for k in s["keys"]}

    def reconcile(self) -> dict:
        """Undo what a killed run left half done; returns what was removed."""
        listed = {s["path"] for s in self.manifest["shards"]}
        packed = self.packed_keys()
        removed = {"unlisted_shards": 0, "packed_staged": 0, "temporary": 0}
        walk = [w for top in ("shards", "staging") for w in os.walk(os.path.join(self.out_dir, top))]
        for root, _, files in walk:
            for name in files:
                full = os.path.join(root, name)
                rel = os.path.relpath(full, self.out_dir)
                if ".tmp-" in name:
                    os.remove(full)
                    removed["temporary"] += 1
                elif rel.startswith("shards" + os.sep) and rel not in listed:
                    os.remove(full)
                    removed["unlisted_shards"] += 1
                elif rel.startswith("staging" + os.sep) and name[:-4] in packed:
                    os.remove(full)
                    removed["packed_staged"] += 1
        return removed

    def staged(self) -> dict[tuple[str, str], list[str]]:
        """Staged, not yet packed sample files per (label, split), in key order."""
        out: dict[tuple[str, str], list[str]] = {}
        root = os.path.join(self.out_dir, "staging")
        packed = self.packed_keys()
        if not os.path.isdir(root):
            return out
        for label in sorted(os.listdir(root)):
            for split in sorted(os.listdir(os.path.join(root, label))):
                d = os.path.join(root, label, split)
                names = sorted(n for n in os.listdir(d) if n.endswith(".tar") and n[:-4] not in packed)
                if names:
                    out[(label, split)] = [os.path.join(d, n) for n in names]
        return out

    def pack(self, final: bool = False) -> list[dict]:
        """Write every full shard (and, when final, the last partial one per split); returns them."""
        written = []
        for (label, split), files in self.staged().items():
            while len(files) >= self.max_samples or (final and files):
                batch, files = files[: self.max_samples], files[self.max_samples:]
                written.append(self._write_shard(label, split, batch))
        return written

    def _write_shard(self, label: str, split: str, files: list[str]) -> dict:
        index = sum(1 for s in self.manifest["shards"] if s["label"] == label and s["split"] == split)
        rel = os.path.join("shards", label, f"{split}-{index:06d}.tar")
        samples = []
        for f in files:
            with open(f, "rb") as fh:
                samples += read_tar_samples(fh.read())
        data = encode_tar(samples)
        os.makedirs(os.path.dirname(os.path.join(self.out_dir, rel)), exist_ok=True)
        atomic_write(os.path.join(self.out_dir, rel), data)
        entry = {"path": rel, "label": label, "split": split, "samples": len(samples),
                 "keys": [s["__key__"] for s in samples], "bytes": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()}
        self.manifest["shards"].append(entry)
        atomic_write(self.path, json.dumps(self.manifest, indent=1).encode())
        for f in files:  # only after the manifest holds them
            os.remove(f)
        return entry
