"""Where assets come from: the built-in demo assets, or a local folder / list file."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from curation.pipeline_config import Pipeline

ASSET_EXTENSIONS = (".glb", ".gltf")


def write_demo_assets(out_dir: str, seed: int = 0) -> list[dict]:
    """Generate the demo assets with Blender in a subprocess; returns their manifest entries."""
    manifest = os.path.join(out_dir, "demo_assets.json")
    if not os.path.exists(manifest):
        subprocess.run([sys.executable, "-m", "render.demo_assets", "--out", out_dir, "--seed", str(seed)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(manifest) as f:
        entries = json.load(f)
    return [{**e, "path": os.path.join(out_dir, e["file"])} for e in entries]


def local_assets(path: str) -> list[str]:
    """Asset files in a folder (sorted), or the paths listed one per line in a text file."""
    if os.path.isdir(path):
        return sorted(os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(ASSET_EXTENSIONS))
    if os.path.isfile(path):
        base = os.path.dirname(os.path.abspath(path))
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        return [ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines]
    raise FileNotFoundError(f"source path {path!r} is neither a folder nor a list file")


def assets_for(pipe: Pipeline, work_dir: str) -> list[str]:
    if pipe.source.kind == "demo":
        return [e["path"] for e in write_demo_assets(os.path.join(work_dir, "assets"), pipe.seed)]
    return local_assets(pipe.source.path)
