"""A local folder of assets, a list file (one path or URL per line), or a URL prefix
(`s3://bucket/assets/`): `source.path`. Tasks read each path or URL on their own node."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from curation.sources.base import AssetTask, Source
from dataset.storage import Store, is_url

if TYPE_CHECKING:
    from curation.pipeline_config import Pipeline

ASSET_EXTENSIONS = (".glb", ".gltf")


def local_assets(path: str) -> list[str]:
    """Asset files in a folder or under a URL prefix (top level, sorted), or the paths listed one per
    line in a text file."""
    if is_url(path):
        prefix = Store(path)
        names = [p for p in prefix.list() if "/" not in p and p.lower().endswith(ASSET_EXTENSIONS)]
        if not names and not prefix.exists(""):
            raise FileNotFoundError(f"source path {path!r}: nothing there")
        return [prefix.url(n) for n in names]
    if os.path.isdir(path):
        return sorted(os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(ASSET_EXTENSIONS))
    if os.path.isfile(path):
        base = os.path.dirname(os.path.abspath(path))
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        return [ln if os.path.isabs(ln) or is_url(ln) else os.path.join(base, ln) for ln in lines]
    raise FileNotFoundError(f"source path {path!r}: nothing there (a folder of assets or a list file is expected)")


class LocalSource(Source):
    kind = "local"
    hash_excludes = ("path",)  # where the files are read from: a laptop folder and a bucket hash alike

    def select(self, pipe: Pipeline, out: Store) -> tuple[list[AssetTask], list[dict]]:
        from render.launcher import uid_from_path  # here: the config imports this module, keep it light

        return [AssetTask(uid_from_path(p), self.kind, path=p) for p in local_assets(pipe.source.path)], []


SOURCES = (LocalSource(),)
