"""Where assets come from: the built-in demo assets, the procedural family, or a local folder / list
file / URL prefix.

What a render task receives is a path or URL it can read on its own node: with the output in an
object store, the demo assets are uploaded there (`assets/`) and tasks read them from it; a `local`
source may itself be a URL prefix (`s3://bucket/assets/`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from curation.pipeline_config import Pipeline
from dataset.storage import Store, is_url

ASSET_EXTENSIONS = (".glb", ".gltf")


LISTINGS = {"demo": "demo_assets.json", "procedural": "procedural_assets.json"}  # generated sources


def _generated_entries(module: str, out_dir: str, listing: str, fresh, *args: str) -> list[dict]:
    """Run Blender's generator `module` into out_dir unless `fresh(entries)` holds for the listing
    already there; returns the listing's entries with their paths."""
    manifest = os.path.join(out_dir, listing)
    entries = None
    if os.path.exists(manifest):
        with open(manifest) as f:
            entries = json.load(f)
    if entries is None or not fresh(entries):
        subprocess.run([sys.executable, "-m", module, "--out", out_dir, *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with open(manifest) as f:
            entries = json.load(f)
    return [{**e, "path": os.path.join(out_dir, e["file"])} for e in entries]


def write_demo_assets(out_dir: str, seed: int = 0) -> list[dict]:
    """Generate the demo assets with Blender in a subprocess; returns their manifest entries."""
    return _generated_entries("render.demo_assets", out_dir, LISTINGS["demo"], lambda entries: True,
                              "--seed", str(seed))


def write_procedural_assets(out_dir: str, variants: int, seed: int = 0) -> list[dict]:
    """Generate the procedural family (render/procedural_assets.py) with Blender in a subprocess, unless
    `out_dir` already holds those variants; returns their manifest entries."""
    return _generated_entries("render.procedural_assets", out_dir, LISTINGS["procedural"],
                              lambda entries: len(entries) == variants, "--variants", str(variants), "--seed",
                              str(seed))


def _generated(pipe: Pipeline, out_dir: str) -> list[dict]:
    """The generated assets of a demo or procedural source, written into out_dir."""
    if pipe.source.kind == "procedural":
        return write_procedural_assets(out_dir, pipe.source.variants, pipe.seed)
    return write_demo_assets(out_dir, pipe.seed)


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


def assets_for(pipe: Pipeline, out: Store) -> list[str]:
    if pipe.source.kind not in LISTINGS:
        return local_assets(pipe.source.path)
    if out.local:
        return [e["path"] for e in _generated(pipe, out.url("assets"))]
    # generated on the driver, then put where every node reads them; the listing goes last, so a
    # resumed run finds either all of them or generates them again
    name = LISTINGS[pipe.source.kind]
    listing = f"assets/{name}"
    if not out.exists(listing) or (pipe.source.kind == "procedural" and
                                   len(json.loads(out.read(listing))) != pipe.source.variants):
        with tempfile.TemporaryDirectory(prefix="dam-generated-assets-") as tmp:
            for e in _generated(pipe, tmp):
                with open(e["path"], "rb") as f:
                    out.write(f"assets/{e['file']}", f.read())
            with open(os.path.join(tmp, name), "rb") as f:
                out.write(listing, f.read())
    return [out.url(f"assets/{e['file']}") for e in json.loads(out.read(listing))]
