"""Shared fixtures: tiny render settings, the shared real assets, the built-in demo assets, and a
session cache of rendered clips so tests that read the same render share it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from render.launcher import render_asset
from render.settings import JobSettings

SHARED_ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


def tiny_job(resolution=48, samples=4, keyframes=4, engine="cycles", seed=0) -> JobSettings:
    job = JobSettings(seed=seed)
    job.render.resolution, job.render.samples, job.render.engine = resolution, samples, engine
    job.keyframes.count = keyframes
    return job


@pytest.fixture(scope="session")
def shared_asset():
    def get(name: str) -> str:
        path = SHARED_ASSETS / name
        if not path.exists():
            pytest.skip(f"{path} not found: tests on the shared real assets need ../shared/assets beside the repo")
        return str(path)
    return get


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory) -> dict:
    from curation.sources import write_demo_assets
    return {e["name"]: e for e in write_demo_assets(str(tmp_path_factory.mktemp("demo_assets")), seed=0)}


@pytest.fixture(scope="session")
def demo_copies(tmp_path_factory, demo_assets):
    """name -> {format: path} of a demo asset written again as FBX, USD, OBJ, .blend and COLLADA
    (tests/format_copies.py), made once per session; tests copy them, never move or change them."""
    from tests.format_copies import format_copies

    cache = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = format_copies(demo_assets[name]["path"], str(tmp_path_factory.mktemp(f"copies-{name}")))
        return cache[name]
    return get


@pytest.fixture(scope="session")
def render_cached(tmp_path_factory):
    cache = {}

    def render(path: str, job: JobSettings, **kw):
        key = (path, json.dumps(job.to_dict(), sort_keys=True), json.dumps(kw, sort_keys=True))
        if key not in cache:
            cache[key] = render_asset(path, str(tmp_path_factory.mktemp("clips")), job, **kw)
        return cache[key]
    return render


def tiny_pipelines_file(folder, asset_paths: list[str], samples: int = 1, extra: str = "") -> str:
    """A pipelines file with one pipeline, `tiny`: the given assets through the local source, 6
    keyframes at 32 px, half the assets in the test split, 2 clips per shard (`extra`: more keys)."""
    listing = folder / "assets.txt"
    listing.write_text("\n".join(asset_paths) + "\n")
    path = folder / "pipelines.yaml"
    path.write_text(f"""
tiny:
  source: {{kind: local, path: {listing}}}
  keyframes: {{count: 6}}
  render: {{resolution: 32, samples: {samples}, timeout_s: 120}}
  split: {{test_fraction: 0.5}}
  shards: {{max_samples: 2}}
{extra}""")
    return str(path)


def still_glb(glb: str, dest) -> str:
    """A valid GLB with the animations of `glb` removed from its JSON: a still asset."""
    import struct

    data = open(glb, "rb").read()
    (n,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20:20 + n])
    gltf.pop("animations")
    body = json.dumps(gltf).encode()
    body += b" " * (-len(body) % 4)
    rest = data[20 + n:]
    dest.write_bytes(b"glTF" + struct.pack("<II", 2, 20 + len(body) + len(rest)) + struct.pack("<I", len(body))
                     + b"JSON" + body + rest)
    return str(dest)


TRAINING_ASSETS = ["rigid_spinner", "multi_anim", "blob_shapekeys", "creature_textured"]


@pytest.fixture(scope="session")
def clip_shards(tmp_path_factory, demo_assets) -> dict:
    """Real shards from the pipeline (tiny renders of 4 demo assets, 6 clips, 6 keyframes each):
    {"train": [paths], "test": [paths], "all": [paths], "clips": count} for the training tests."""
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("clip_shards")
    pipelines = tiny_pipelines_file(work, [demo_assets[n]["path"] for n in TRAINING_ASSETS], samples=2,
                                    extra="  dense: {min_points: 2000}\n")
    out = work / "run"
    proc = subprocess.run([sys.executable, "-m", "driveanymesh", "--pipelines-file", str(pipelines), "run", "tiny",
                           "--out", str(out), "--workers", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {split: [str(out / s["path"]) for s in manifest["shards"] if s["split"] == split]
             for split in ("train", "test")}
    return {**paths, "all": paths["train"] + paths["test"],
            "clips": sum(s["samples"] for s in manifest["shards"])}


@pytest.fixture(scope="session")
def trained_vae(clip_shards, tmp_path_factory) -> str:
    """A tiny VAE trained briefly on `clip_shards` (its checkpoint path)."""
    from train.config import load_train_config
    from train.trainer import Trainer

    cfg = load_train_config("vae-tiny")
    cfg.max_steps, cfg.log_every, cfg.checkpoint_every, cfg.val_every = 150, 10**6, 10**6, 10**6
    trainer = Trainer(cfg, clip_shards["train"], str(tmp_path_factory.mktemp("vae")))
    trainer.fit()
    path = trainer.save()
    trainer.close()
    return path


@pytest.fixture(scope="session")
def trained_diffusion(clip_shards, trained_vae, tmp_path_factory) -> str:
    """A tiny diffusion model trained briefly on `clip_shards` with `trained_vae`."""
    from train.config import load_train_config
    from train.trainer import Trainer

    cfg = load_train_config("diffusion-tiny")
    cfg.max_steps, cfg.log_every, cfg.checkpoint_every, cfg.val_every = 60, 10**6, 10**6, 10**6
    trainer = Trainer(cfg, clip_shards["train"], str(tmp_path_factory.mktemp("diffusion")),
                      vae_checkpoint=trained_vae)
    trainer.fit()
    path = trainer.save()
    trainer.close()
    return path


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on loopback (moto's server): the environment a client needs to reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, request):
    """A fresh bucket on the loopback endpoint, with this process's environment pointed at it:
    {"url": "s3://<bucket>", "env": the environment for subprocesses}."""
    import os
    import re

    import boto3

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{os.getpid()}"
    boto3.client("s3").create_bucket(Bucket=name)
    return {"url": f"s3://{name}", "env": {**os.environ, **s3_server}}


@pytest.fixture(scope="session")
def one_clip(clip_shards, tmp_path_factory) -> str:
    """The clip of `clip_shards` that moves most, alone in a shard (its path)."""
    import io

    import numpy as np
    import webdataset as wds

    from dataset.shard_writer import encode_tar

    samples = list(wds.WebDataset(clip_shards["all"], shardshuffle=False))
    motion = [np.abs(np.load(io.BytesIO(s["verts.npy"])) - np.load(io.BytesIO(s["verts.npy"]))[0]).mean()
              for s in samples]
    path = tmp_path_factory.mktemp("one_clip") / "one.tar"
    path.write_bytes(encode_tar([samples[int(np.argmax(motion))]]))
    return str(path)
