"""Shards through the storage layer (a folder, and a real S3 endpoint on loopback): written
atomically, each sample exactly once, manifest counts and checksums true, shard names contiguous,
and a run killed between any two steps packs to the same content when started again."""
import hashlib
import io
import json

import numpy as np
import pytest
import webdataset as wds

from dataset.shard_writer import ShardPlanner, stage_sample, write_shard
from dataset.storage import Store, register_with_webdataset


def sample(key: str) -> dict:
    buf = io.BytesIO()
    np.save(buf, np.full((2, 3, 3), len(key), np.float32))
    return {"__key__": key, "meta.json": json.dumps({"key": key}).encode(), "verts.npy": buf.getvalue()}


def pack_all(planner: ShardPlanner, final: bool) -> list[dict]:
    """What the driver does, without Ray: write each planned shard, then commit it."""
    entries = []
    for rel, label, split, keys in planner.next_shards(final):
        entries.append(write_shard(planner.store, rel, label, split, keys))
        planner.commit(entries[-1])
    return entries


def read_back(store: Store) -> list[str]:
    register_with_webdataset()
    keys = []
    for s in ShardPlanner(store).manifest["shards"]:
        data = store.read(s["path"])
        assert hashlib.sha256(data).hexdigest() == s["sha256"] and len(data) == s["bytes"]
        got = [x["__key__"] for x in wds.WebDataset(store.url(s["path"]), shardshuffle=False)]
        assert got == s["keys"] and len(got) == s["samples"]
        keys += got
    return keys


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store(str(tmp_path / "out"))
    return Store(request.getfixturevalue("s3_bucket")["url"] + "/out")


def test_full_shards_then_final_partial_in_key_order(store):
    planner = ShardPlanner(store, max_samples=3)
    for i in reversed(range(7)):  # finish order does not matter within a shard
        stage_sample(store, "textured", "train", sample(f"a{i}_0"))
        planner.add("textured", "train", f"a{i}_0")
    assert [e["samples"] for e in pack_all(planner, final=False)] == [3, 3]
    assert [e["samples"] for e in pack_all(planner, final=True)] == [1]
    assert sorted(read_back(store)) == [f"a{i}_0" for i in range(7)]
    assert store.list("shards") == [f"shards/textured/train-{i:06d}.tar" for i in range(3)]
    assert store.list("staging") == []
    assert not [p for p in store.list() if ".tmp-" in p]
    decoded = next(iter(wds.WebDataset(store.url("shards/textured/train-000000.tar"), shardshuffle=False).decode()))
    assert decoded["verts.npy"].shape == (2, 3, 3) and decoded["meta.json"]["key"] == "a0_0"


@pytest.mark.parametrize("stop_after", ["shard_written", "manifest_written"])
def test_kill_between_steps_then_reconcile_gives_exactly_once(tmp_path, stop_after):
    store = Store(str(tmp_path))
    planner = ShardPlanner(store, max_samples=2)
    for i in range(4):
        stage_sample(store, "textureless", "test", sample(f"b{i}_0"))
        planner.add("textureless", "test", f"b{i}_0")
    rel, label, split, keys = planner.next_shards()[0]
    entry = write_shard(store, rel, label, split, keys)
    if stop_after == "manifest_written":  # dies before deleting the staged samples
        planner.manifest["shards"].append(entry)
        store.write("manifest.json", json.dumps(planner.manifest).encode())
    # a stale sample of an asset the audit does not record as finished: it is rendered again
    stage_sample(store, "textureless", "test", sample("c0_0"))

    again = ShardPlanner(store, max_samples=2)
    removed = again.reconcile({f"b{i}_0" for i in range(4)})
    assert removed["unlisted_shards"] == (1 if stop_after == "shard_written" else 0)
    pack_all(again, final=True)
    assert sorted(read_back(store)) == [f"b{i}_0" for i in range(4)]
    assert [s["path"] for s in again.manifest["shards"]] == [f"shards/textureless/test-00000{i}.tar" for i in (0, 1)]
    assert store.list("staging") == []


def test_a_shard_not_committed_leaves_no_gap_in_the_names(tmp_path):
    store = Store(str(tmp_path))
    planner = ShardPlanner(store, max_samples=1)
    for k in ("a_0", "b_0", "c_0"):
        stage_sample(store, "textured", "train", sample(k))
        planner.add("textured", "train", k)
    jobs = planner.next_shards()
    for rel, label, split, keys in jobs[1:]:  # the first one never completes (its node died)
        planner.commit(write_shard(store, rel, label, split, keys))
    again = ShardPlanner(store, max_samples=1)
    again.reconcile({"a_0", "b_0", "c_0"})
    assert [(rel, keys) for rel, _, _, keys in again.next_shards()] == [("shards/textured/train-000000.tar", ["a_0"])]


def test_object_store_writes_are_whole_objects_or_nothing(s3_bucket):
    store = Store(s3_bucket["url"] + "/run")
    with pytest.raises(RuntimeError):
        with store.writer("shards/x.tar") as f:
            f.write(b"half of a shard")
            raise RuntimeError("the task died here")
    assert store.list() == []  # nothing at the final key, no temporary object either
    with store.writer("shards/x.tar") as f:
        f.write(b"all of it")
    assert store.read("shards/x.tar") == b"all of it" and store.list() == ["shards/x.tar"]


def test_shards_are_bounded_by_bytes_and_commits_append_entries(store, monkeypatch):
    from dataset import shard_writer

    monkeypatch.setattr(shard_writer, "CONSOLIDATE_EVERY", 3)
    sizes = {}
    for i in range(7):
        sizes[f"k{i}_0"] = stage_sample(store, "textured", "train", sample(f"k{i}_0"))
    one = max(sizes.values())
    planner = ShardPlanner(store, max_samples=64, max_bytes=2 * one)  # two samples fit, three do not
    for k, n in sizes.items():
        planner.add("textured", "train", k, n)
    written = []
    for rel, label, split, keys in planner.next_shards():
        written.append(write_shard(store, rel, label, split, keys))
        planner.commit(written[-1])
        if len(written) < 3:  # a commit writes one small entry; manifest.json waits for the batch
            assert not store.exists("manifest.json") and store.exists(f"manifest.d/{rel}.json")
    assert [e["samples"] for e in written] == [2, 2, 2] and all(e["bytes"] <= 2 * one for e in written)
    assert store.exists("manifest.json") and store.list("manifest.d") == []  # consolidated after 3
    pack_all(planner, final=True)  # the last key: a partial shard, listed as an entry only
    assert store.list("manifest.d") == ["manifest.d/shards/textured/train-000003.tar.json"]
    assert sorted(read_back(store)) == sorted(sizes)  # readers see manifest.json plus the entries
    from dataset.shard_list import manifest_shards
    assert len(manifest_shards(store.url("manifest.json"))) == 4


def test_the_planner_knows_a_key_from_staging_to_its_shard(tmp_path):
    from render.clip_writer import clip_key, is_clip_key_of

    store = Store(str(tmp_path / "out"))
    planner = ShardPlanner(store, max_samples=2)
    for key in ("a_0", "a_1"):
        stage_sample(store, "textured", "train", sample(key))
    planner.add("textured", "train", "a_0")
    assert planner.knows("a_0") and not planner.knows("a_1")  # pending; staged but not the planner's
    planner.add("textured", "train", "a_1")
    (rel, label, split, keys), = planner.next_shards()
    assert planner.knows("a_0") and planner.knows("a_1")  # being written
    planner.commit(write_shard(store, rel, label, split, keys))
    assert planner.knows("a_0") and not planner.writing  # packed

    assert is_clip_key_of(clip_key("a", 1), "a") and is_clip_key_of(clip_key("a", 1, 2), "a")
    assert not is_clip_key_of(clip_key("a_1", 0), "a")  # a uid that starts with another is not it
    assert is_clip_key_of(clip_key("a_1", 0), "a_1") and not is_clip_key_of("ab_0", "a")
