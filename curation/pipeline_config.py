"""Load and validate a named pipeline from pipelines.yaml.

Every key is checked against the dataclasses below and render.settings (dataset/config_files.py,
pydantic, as training.yaml is): an unknown key, a wrong type or a missing pipeline is an error naming
the file, the pipeline and the key. `extends: NAME` starts from pipeline NAME of the same file. Keys
left out take the dataclass defaults, which are the paper's settings.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field


from curation import sources
from dataset import config_files
from curation.filters import FilterSettings
from render.settings import JobSettings, KeyframeSettings, RenderSettings

SOURCE_KINDS = sources.kinds()
DEFAULT_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines.yaml")


class PipelineConfigError(ValueError):
    pass


@dataclass
class _SourceCommon:
    kind: str = "demo"   # one of SOURCE_KINDS (curation/sources/: demo, procedural, local, objaverse, ...)
    path: str = ""       # local: folder of .glb/.gltf files, or a text file with one path per line
    variants: int = 200  # procedural: how many variants (render/procedural_assets.py), from the pipeline's seed
    limit: int = 0       # every kind: only the first N assets in the source's order (0: all), for a cheap trial


# `source:` is the common keys plus one section per source that has settings (`source.objaverse`),
# built from the registry so that a new source's module brings its own keys.
SourceSettings = dataclasses.make_dataclass(
    "SourceSettings",
    [(s.section, s.settings, field(default_factory=s.settings)) for s in sources.all_sources() if s.settings],
    bases=(_SourceCommon,))
SourceSettings.__module__ = __name__


@dataclass
class DenseSettings:
    min_points: int = 50_000   # subdivide the first keyframe's mesh until it has at least this many


@dataclass
class SplitSettings:
    test_fraction: float = 0.1  # share of assets (by uid hash) in the test split


@dataclass
class ShardSettings:
    max_samples: int = 64       # clips per shard, at most
    # bytes per shard, at most (a 100k-vertex clip is ~36 MB: 64 of them would be GBs); "" = no bound
    max_bytes: int | str = "1GB"

    def bytes(self) -> int:
        return parse_bytes(str(self.max_bytes)) if self.max_bytes else 0


@dataclass
class RaySettings:
    """What one render task asks Ray for: the scheduler (and an autoscaler) sees exactly this."""
    cpus_per_task: int = 1      # CPUs one render task reserves (its Blender render threads)
    gpus_per_task: float = 0.0  # > 0: Cycles renders on the task's GPU (render.device must be GPU)
    memory_per_task: int | str = ""  # memory one task reserves and its Blender job may use, e.g. "8GiB" ("" = none)
    resources_per_task: dict[str, float] = field(default_factory=dict)  # custom node resources
    max_in_flight: int = 0      # tasks submitted at once; 0 = twice the task slots of the live cluster
    retries: int = 2            # re-runs of a task whose worker died

    def memory_bytes(self) -> int:
        return parse_bytes(str(self.memory_per_task)) if self.memory_per_task else 0


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """'8GiB', '500MB', '1073741824' -> bytes."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 8GiB, 500MB, 1073741824)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


# Settings that do not change what a clip is: a run may resume with them changed. A key ending in "."
# is a whole section. Each source adds its own (`Source.hash_excludes`, under `source.`).
HASH_EXCLUDES = ("ray.", "shards.", "source.limit", "filters.geometry_first",
                 *(f"source.{k}" for s in sources.all_sources() for k in s.hash_excludes))


def hash_excluded(key: str, kind: str) -> bool:
    """Whether the dotted setting `key` is left out of the config hash of a pipeline whose source is
    `kind`: HASH_EXCLUDES, and the section of a source not in use unless it is `hashed_when_inactive`."""
    if any(key == x or (x.endswith(".") and key.startswith(x)) for x in HASH_EXCLUDES):
        return True
    return any(s.settings and s.kind != kind and not s.hashed_when_inactive and
               (key == f"source.{s.section}" or key.startswith(f"source.{s.section}."))
               for s in sources.all_sources())


@dataclass
class Pipeline:
    name: str = ""
    description: str = ""
    seed: int = 0
    source: SourceSettings = field(default_factory=SourceSettings)
    keyframes: KeyframeSettings = field(default_factory=KeyframeSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    dense: DenseSettings = field(default_factory=DenseSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    shards: ShardSettings = field(default_factory=ShardSettings)
    ray: RaySettings = field(default_factory=RaySettings)

    def job_settings(self) -> JobSettings:
        gate = ({"module": "curation.filters", "settings": dataclasses.asdict(self.filters)}
                if self.filters.geometry_first else {})
        return JobSettings(render=self.render, keyframes=self.keyframes, seed=self.seed, gate=gate)

    def config_hash(self) -> str:
        """Short sha256 of the settings that decide how clips are made, recorded with every output
        they produced. What `hash_excluded` names is left out (where and how many tasks run, shard
        sizes, whether geometry rules run before rendering, `source.limit`, and each source's own:
        where a local source's files are, the number of procedural variants, Objaverse's `limit`,
        `uids_file` and download settings), so the same assets made into clips on a laptop from a
        folder and on a cluster from a bucket carry the same hash, and a partial rebuild can grow."""
        settings = _drop(dataclasses.asdict(self), self.source.kind)
        blob = json.dumps(settings, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _drop(d: dict, kind: str, prefix: str = "") -> dict:
    """`d` without the keys `hash_excluded` names (nested dicts walked, dotted keys)."""
    out = {}
    for k, v in d.items():
        dotted = f"{prefix}{k}"
        if hash_excluded(dotted, kind) or (isinstance(v, dict) and hash_excluded(dotted + ".", kind)):
            continue
        out[k] = _drop(v, kind, dotted + ".") if isinstance(v, dict) else v
    return out


def available(path: str = DEFAULT_FILE) -> list[str]:
    return sorted(_read(path))


def descriptions(path: str = DEFAULT_FILE) -> dict[str, str]:
    """Pipeline name -> its description, for the command line's help."""
    return {name: " ".join(str((body or {}).get("description", "")).split()) if isinstance(body, dict) else ""
            for name, body in sorted(_read(path).items())}


def load_pipeline(name: str, path: str = DEFAULT_FILE, overrides: list[str] | None = None) -> Pipeline:
    """The named pipeline, with `overrides` ("dotted.key=value", the value read as YAML) applied
    before validation, so an override is checked exactly as the file is."""
    doc = _read(path)
    if name not in doc:
        raise PipelineConfigError(f"{path}: no pipeline named {name!r} (have: {', '.join(sorted(doc))})")
    where = f"{path}: pipeline {name!r}"
    body = config_files.resolve(doc[name], where, path, doc, [name], PipelineConfigError, entry_word="pipeline")
    body = json.loads(json.dumps(body))  # a copy the overrides may change
    for item in overrides or []:
        config_files.apply_override(body, item, where, PipelineConfigError)
    pipe = config_files.build(Pipeline, {**body, "name": name}, where, PipelineConfigError)
    if pipe.source.kind not in SOURCE_KINDS:
        raise PipelineConfigError(f"{where}: key 'source.kind': must be one of {SOURCE_KINDS}, "
                                  f"got {pipe.source.kind!r}")
    try:
        sources.get(pipe.source.kind).validate(pipe)
        pipe.render.validate()
        pipe.keyframes.validate()
        pipe.ray.memory_bytes()
        pipe.shards.bytes()
    except ValueError as exc:
        raise PipelineConfigError(f"{where}: {exc}") from None
    if (pipe.render.device == "GPU") != (pipe.ray.gpus_per_task > 0):
        raise PipelineConfigError(
            f"{where}: render.device is {pipe.render.device} but ray.gpus_per_task is {pipe.ray.gpus_per_task:g}: "
            "a task renders on a GPU only when it holds one (set both, e.g. render.device=GPU with "
            "ray.gpus_per_task=1, or render.device=CPU with ray.gpus_per_task=0)")
    return pipe


def _read(path: str) -> dict:
    doc = config_files.read_yaml(path, "pipelines file", PipelineConfigError)
    if not isinstance(doc, dict):
        raise PipelineConfigError(f"{path}: expected a mapping of pipeline names")
    return doc
