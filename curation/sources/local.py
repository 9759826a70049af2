"""A local folder of assets, a list file (one path or URL per line), or a URL prefix
(`s3://bucket/assets/`): `source.path`. Tasks read each path or URL on their own node."""
from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from curation.sources.base import AssetTask, Source
from dataset.storage import Store, is_url
from render.formats import is_asset_file

if TYPE_CHECKING:
    from curation.pipeline_config import Pipeline

def local_assets(path: str) -> list[str]:
    """Asset files (`render.formats`: those Blender imports and those it cannot, which are recorded as
    `unsupported_format`) in a folder or under a URL prefix (top level, sorted), or the paths listed
    one per line in a text file."""
    if is_url(path):
        prefix = Store(path)
        names = [p for p in prefix.list() if "/" not in p and is_asset_file(p)]
        if not names and not prefix.exists(""):
            raise FileNotFoundError(f"source path {path!r}: nothing there")
        return [prefix.url(n) for n in names]
    if os.path.isdir(path):
        return sorted(os.path.join(path, n) for n in os.listdir(path) if is_asset_file(n))
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

        tasks, uids = [], set()
        for p in dict.fromkeys(local_assets(pipe.source.path)):  # a path listed twice is one asset
            uid = uid_from_path(p)
            if uid in uids:  # fox.glb and fox.fbx side by side: the later one's uid names its format
                name = os.path.basename(p.rstrip("/"))
                uid = f"{uid}-{os.path.splitext(name)[1][1:].lower()}-{hashlib.sha256(p.encode()).hexdigest()[:8]}"
            uids.add(uid)
            tasks.append(AssetTask(uid, self.kind, path=p))
        return tasks, []


SOURCES = (LocalSource(),)
