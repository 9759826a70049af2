"""The generated sources: the built-in demo assets (`demo`) and the procedural family (`procedural`).

Blender writes them on the driver (render/demo_assets.py, render/procedural_assets.py, in a
subprocess: the driver process never imports bpy). What a render task receives is a path it can
read on its own node: with the output in an object store, the assets are uploaded there (`assets/`)
and tasks read them from it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from curation.sources.base import AssetTask, Source
from dataset.storage import Store

if TYPE_CHECKING:
    from curation.pipeline_config import Pipeline


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
    return _generated_entries("render.demo_assets", out_dir, DemoSource.listing, lambda entries: True,
                              "--seed", str(seed))


def write_procedural_assets(out_dir: str, variants: int, seed: int = 0) -> list[dict]:
    """Generate the procedural family (render/procedural_assets.py) with Blender in a subprocess, unless
    `out_dir` already holds those variants; returns their manifest entries."""
    return _generated_entries("render.procedural_assets", out_dir, ProceduralSource.listing,
                              lambda entries: len(entries) == variants, "--variants", str(variants), "--seed",
                              str(seed))


class _Generated(Source):
    listing = ""  # the generator's listing file, written last

    def generate(self, pipe: Pipeline, out_dir: str) -> list[dict]:
        raise NotImplementedError

    def complete(self, pipe: Pipeline, entries: list[dict]) -> bool:
        return True

    def select(self, pipe: Pipeline, out: Store) -> tuple[list[AssetTask], list[dict]]:
        from render.launcher import uid_from_path  # here: the config imports this module, keep it light

        return [AssetTask(uid_from_path(p), self.kind, path=p) for p in self._paths(pipe, out)], []

    def _paths(self, pipe: Pipeline, out: Store) -> list[str]:
        if out.local:
            return [e["path"] for e in self.generate(pipe, out.url("assets"))]
        # generated on the driver, then put where every node reads them; the listing goes last, so a
        # resumed run finds either all of them or generates them again
        listing = f"assets/{self.listing}"
        if not out.exists(listing) or not self.complete(pipe, json.loads(out.read(listing))):
            with tempfile.TemporaryDirectory(prefix="dam-generated-assets-") as tmp:
                for e in self.generate(pipe, tmp):
                    with open(e["path"], "rb") as f:
                        out.write(f"assets/{e['file']}", f.read())
                with open(os.path.join(tmp, self.listing), "rb") as f:
                    out.write(listing, f.read())
        return [out.url(f"assets/{e['file']}") for e in json.loads(out.read(listing))]


class DemoSource(_Generated):
    """The 12 built-in demo assets (render/demo_assets.py); the pipeline's seed varies their colours
    and amplitudes."""
    kind = "demo"
    listing = "demo_assets.json"

    def generate(self, pipe: Pipeline, out_dir: str) -> list[dict]:
        return write_demo_assets(out_dir, pipe.seed)


class ProceduralSource(_Generated):
    """`source.variants` assets of the procedural family (render/procedural_assets.py): variant i
    depends on (seed, i) only, so more variants grow a run and the count is not hashed."""
    kind = "procedural"
    listing = "procedural_assets.json"
    hash_excludes = ("variants",)

    def validate(self, pipe: Pipeline) -> None:
        if pipe.source.variants < 1:
            raise ValueError(f"key 'source.variants': a procedural source needs at least 1 variant, got "
                             f"{pipe.source.variants}")

    def generate(self, pipe: Pipeline, out_dir: str) -> list[dict]:
        return write_procedural_assets(out_dir, pipe.source.variants, pipe.seed)

    def complete(self, pipe: Pipeline, entries: list[dict]) -> bool:
        return len(entries) == pipe.source.variants


SOURCES = (DemoSource(), ProceduralSource())
