"""Shards: written atomically, each sample exactly once, manifest counts and checksums true, and a
run killed between any two steps packs to the same content when started again."""
import hashlib
import json
import os

import numpy as np
import pytest
import webdataset as wds

from dataset.shard_writer import ShardPacker, stage_sample


def sample(key: str) -> dict:
    return {"__key__": key, "meta.json": json.dumps({"key": key}).encode(), "verts.npy": _npy(np.full((2, 3, 3), len(key)))}


def _npy(a):
    import io
    buf = io.BytesIO()
    np.save(buf, a.astype(np.float32))
    return buf.getvalue()


def read_back(out) -> list[str]:
    packer = ShardPacker(str(out))
    keys = []
    for s in packer.manifest["shards"]:
        path = os.path.join(out, s["path"])
        data = open(path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
        got = [x["__key__"] for x in wds.WebDataset(path, shardshuffle=False)]
        assert got == s["keys"] and len(got) == s["samples"]
        keys += got
    return keys


def test_full_shards_then_final_partial_in_key_order(tmp_path):
    for i in range(7):
        stage_sample(str(tmp_path), "textured", "train", sample(f"a{i}_0"))
    packer = ShardPacker(str(tmp_path), max_samples=3)
    assert [e["samples"] for e in packer.pack()] == [3, 3]
    assert [e["samples"] for e in packer.pack(final=True)] == [1]
    assert read_back(tmp_path) == [f"a{i}_0" for i in range(7)]
    assert sorted(os.listdir(tmp_path / "shards" / "textured")) == [f"train-{i:06d}.tar" for i in range(3)]
    assert os.listdir(tmp_path / "staging" / "textured" / "train") == []
    decoded = next(iter(wds.WebDataset(str(tmp_path / "shards/textured/train-000000.tar"), shardshuffle=False).decode()))
    assert decoded["verts.npy"].shape == (2, 3, 3) and decoded["meta.json"]["key"] == "a0_0"


@pytest.mark.parametrize("stop_after", ["shard_written", "manifest_written"])
def test_kill_between_steps_then_reconcile_gives_exactly_once(tmp_path, monkeypatch, stop_after):
    for i in range(4):
        stage_sample(str(tmp_path), "textureless", "test", sample(f"b{i}_0"))
    packer = ShardPacker(str(tmp_path), max_samples=2)

    class Killed(Exception):
        pass

    real_remove, real_dump = os.remove, json.dumps
    if stop_after == "manifest_written":  # dies before deleting the staged files
        monkeypatch.setattr(os, "remove", lambda p: (_ for _ in ()).throw(Killed()))
    else:  # dies after the shard file, before the manifest
        monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        packer.pack()
    monkeypatch.setattr(os, "remove", real_remove)
    monkeypatch.setattr(json, "dumps", real_dump)

    again = ShardPacker(str(tmp_path), max_samples=2)
    again.reconcile()
    again.pack(final=True)
    assert sorted(read_back(tmp_path)) == [f"b{i}_0" for i in range(4)]
    assert len(again.manifest["shards"]) == 2
