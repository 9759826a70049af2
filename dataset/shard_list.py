"""Shard URLs from what a user types: paths, URLs (s3://... through fsspec), brace patterns
(`train-{000000..000009}.tar`), and a run's `manifest.json` (local or URL) standing for the shards it
lists, optionally only one split or one label and split: `.../manifest.json#train`,
`.../manifest.json#textured/test`."""
from __future__ import annotations

from braceexpand import braceexpand

from dataset.shard_writer import load_manifest
from dataset.storage import Store, register_with_webdataset


def shard_urls(specs: list[str]) -> list[str]:
    register_with_webdataset()
    urls = []
    for spec in specs:
        path, _, part = spec.partition("#")
        if path.endswith("manifest.json"):
            urls += manifest_shards(path, part)
        else:
            urls += list(braceexpand(spec))
    return urls


def sample_count(specs: list[str]) -> int | None:
    """The samples the specs hold when every spec is a manifest (its shards' counts), else None: a
    bare shard's count is known only by reading it."""
    total = 0
    for spec in specs:
        path, _, part = spec.partition("#")
        if not path.endswith("manifest.json"):
            return None
        total += sum(s["samples"] for s in _chosen(path, part)[1])
    return total


def manifest_shards(manifest_url: str, part: str = "") -> list[str]:
    """The shards a manifest lists (URLs beside it), filtered by `split` or `label/split`."""
    store, chosen = _chosen(manifest_url, part)
    return [store.url(s["path"]) for s in chosen]


def _chosen(manifest_url: str, part: str):
    folder = manifest_url.rsplit("/", 1)[0] if "/" in manifest_url else "."
    store = Store(folder)
    if not store.exists(manifest_url.rsplit("/", 1)[-1]):
        raise FileNotFoundError(f"{manifest_url}: no such manifest")
    manifest = load_manifest(store)  # manifest.json plus shards committed since it was rewritten
    label, _, split = part.rpartition("/")
    chosen = [s for s in manifest["shards"] if (not split or s["split"] == split) and (not label or s["label"] == label)]
    if not chosen:
        raise ValueError(f"{manifest_url}: no shards{' for ' + part if part else ''} "
                         f"(it lists {sorted({(s['label'], s['split']) for s in manifest['shards']})})")
    return store, chosen

