"""Render every asset of a pipeline's source into clip folders, one Blender process per asset."""
from __future__ import annotations

import json
import os

from tqdm import tqdm

from curation.pipeline_config import Pipeline
from curation.sources import assets_for
from render.launcher import render_asset


def run_pipeline(pipe: Pipeline, out_dir: str) -> list[dict]:
    """Returns one record per asset: clips written, clips skipped with reasons, or the failure."""
    assets = assets_for(pipe, out_dir)
    clip_dir = os.path.join(out_dir, "clips")
    extra = {"source": pipe.source.kind, "pipeline": pipe.name, "config_hash": pipe.config_hash()}
    records = []
    bar = tqdm(assets, desc=f"render {pipe.name}", unit="asset")
    for path in bar:
        res = render_asset(path, clip_dir, pipe.job_settings(), extra_meta=extra)
        records.append({"uid": res.uid, "asset": path, "clips": [c["key"] for c in res.clips],
                        "skipped": res.skipped, "failure": res.failure, "seconds": round(res.seconds, 2)})
        bar.set_postfix(clips=sum(len(r["clips"]) for r in records),
                        failed=sum(1 for r in records if r["failure"]))
    with open(os.path.join(out_dir, "render_log.json"), "w") as f:
        json.dump(records, f, indent=1)
    return records
