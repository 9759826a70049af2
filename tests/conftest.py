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
def render_cached(tmp_path_factory):
    cache = {}

    def render(path: str, job: JobSettings, **kw):
        key = (path, json.dumps(job.to_dict(), sort_keys=True), json.dumps(kw, sort_keys=True))
        if key not in cache:
            cache[key] = render_asset(path, str(tmp_path_factory.mktemp("clips")), job, **kw)
        return cache[key]
    return render
