"""The procedural family: every body plan, each variant's parameters its own, variant i the same
file however many variants are asked for, and the `learn` pipeline's hash blind to the count (so a
run can grow); a count under one is refused naming the key."""
import hashlib
import json

import pytest

from curation.pipeline_config import PipelineConfigError, load_pipeline
from curation.sources import write_procedural_assets

pytestmark = pytest.mark.slow


def digests(entries):
    return {e["name"]: hashlib.sha256(open(e["path"], "rb").read()).hexdigest() for e in entries}


def test_variants_cover_every_plan_and_grow_without_changing(tmp_path):
    four = write_procedural_assets(str(tmp_path / "four"), 4, seed=0)
    eight = write_procedural_assets(str(tmp_path / "eight"), 8, seed=0)
    assert {e["plan"] for e in four} == {"serpentine", "legged", "blob", "machine"}
    assert len({json.dumps(e["params"], sort_keys=True) for e in eight}) == 8  # no two alike
    small, large = digests(four), digests(eight)
    assert all(large[name] == digest for name, digest in small.items())  # variant i depends on (seed, i)
    other = digests(write_procedural_assets(str(tmp_path / "seed1"), 4, seed=1))
    assert all(other[name] != digest for name, digest in small.items())


def test_the_learn_pipeline_hash_ignores_the_variant_count():
    base = load_pipeline("learn")
    assert base.source.kind == "procedural" and base.render.resolution == 64 and base.keyframes.count == 30
    assert load_pipeline("learn", overrides=["source.variants=10"]).config_hash() == base.config_hash()
    assert load_pipeline("learn", overrides=["seed=1"]).config_hash() != base.config_hash()
    with pytest.raises(PipelineConfigError, match=r"pipeline 'learn': key 'source.variants'.*got 0"):
        load_pipeline("learn", overrides=["source.variants=0"])
