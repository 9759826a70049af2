"""Training, evaluation and the latent cache read shards from an S3 bucket (a loopback moto endpoint),
with a run's manifest standing for the list of shards."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset.loaders import LoaderConfig, make_loader
from dataset.shard_list import shard_urls
from dataset.storage import Store

CLI = [sys.executable, "-m", "driveanymesh"]


@pytest.fixture
def bucket_run(clip_shards, s3_bucket) -> str:
    """The pipeline-written clip shards and their manifest, copied into a bucket: its run URL."""
    run = Path(clip_shards["all"][0]).parents[2]
    store = Store(f"{s3_bucket['url']}/run")
    manifest = json.loads((run / "manifest.json").read_text())
    for s in manifest["shards"]:
        store.write(s["path"], (run / s["path"]).read_bytes())
    store.write("manifest.json", (run / "manifest.json").read_bytes())
    return store.root


def test_a_manifest_url_lists_its_shards_by_split(bucket_run, clip_shards):
    train = shard_urls([f"{bucket_run}/manifest.json#train"])
    assert [u.rsplit("/", 3)[-3:] for u in train] == [p.rsplit("/", 3)[-3:] for p in clip_shards["train"]]
    assert all(u.startswith("s3://") for u in train)
    assert len(shard_urls([f"{bucket_run}/manifest.json"])) == len(clip_shards["all"])
    with pytest.raises(ValueError, match="no shards for nosuchsplit"):
        shard_urls([f"{bucket_run}/manifest.json#nosuchsplit"])
    batches = list(make_loader(shard_urls([f"{bucket_run}/manifest.json"]), "vae",
                               LoaderConfig(num_points=64, image_size=32), batch_size=1, drop_last=False))
    assert len(batches) == clip_shards["clips"]


def test_train_eval_and_latent_cache_commands_read_s3_shards(bucket_run, trained_vae, s3_bucket, tmp_path):
    env = s3_bucket["env"]
    train = subprocess.run(CLI + ["train", "vae", "--config", "vae-tiny", "--max-steps", "2",
                                  "--shards", f"{bucket_run}/manifest.json#train", "--out", str(tmp_path / "train")],
                           capture_output=True, text=True, env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    assert list((tmp_path / "train" / "checkpoints").glob("step-*.pt"))
    ev = subprocess.run(CLI + ["eval", "--shards", f"{bucket_run}/manifest.json#test", "--vae", trained_vae,
                               "--out", str(tmp_path / "eval"), "--max-clips", "1", "--eval-points", "500"],
                        capture_output=True, text=True, env=env)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert (tmp_path / "eval" / "per_clip.csv").exists()
    enc = subprocess.run(CLI + ["encode-latents", "--vae", trained_vae, "--out", str(tmp_path / "latents"),
                                "--shards", f"{bucket_run}/manifest.json#test"], capture_output=True, text=True, env=env)
    assert enc.returncode == 0, enc.stderr[-3000:]
    assert list((tmp_path / "latents").rglob("test-*.tar"))
