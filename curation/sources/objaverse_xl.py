"""Objaverse-XL as an asset source: animated objects chosen by their per-object Blender metadata,
each fetched as its single file at its pinned commit and checked against its sha256.

Where things are (the `objaverse` package 0.1.7's `objaverse.xl` layout, which this module reads):
  <annotations_dir>/<source>/<source>.parquet   one per XL source (github, sketchfab, thingiverse,
      smithsonian), from huggingface.co/datasets/allenai/objaverse-xl/resolve/main/<source>/<source>.parquet;
      columns fileIdentifier, source, license, fileType, sha256, metadata.
      A GitHub fileIdentifier is https://github.com/<org>/<repo>/blob/<commit>/<path>.
The annotations carry no animation, armature or shape-key counts. Those are what Objaverse-XL's
rendering script (scripts/rendering/blender_script.py, `MetadataExtractor`) writes per object into its
metadata.json: animation_count (bpy.data.actions), armature_count, shape_key_count, vert_count,
poly_count, with the object's file_identifier and sha256. `animation_metadata` is a JSON-lines or
parquet file of those records (one per object, gathered from a metadata pass over the candidates, or
published lists built the same way); selection joins them on sha256, else on file_identifier.

Decisions.
  The parquets are read with pyarrow, five columns in record batches, filtered by file type before a
    Python object is made: the full GitHub table is ~10M rows and pandas (the package's reader) holds
    them all with their metadata strings. A missing parquet is downloaded (the package's URL, or
    $DRIVEANYMESH_OBJAVERSE_XL_URL's) whole or not at all, as the Objaverse source does.
  Sketchfab rows are Objaverse 1.0 (the package fetches them from it): left to the `objaverse`
    source, so one asset never enters twice; thingiverse and smithsonian hold STL scans and GLB
    scans without animation. Hence `sources: [github]`.
  File types: those Blender imports from one file. glTF (external .bin) and OBJ (its .mtl, and no
    animation) need files beside them that a single-file fetch does not bring; DAE has no importer.
  A GitHub object is fetched from raw.githubusercontent.com/<org>/<repo>/<commit>/<path> (or
    $DRIVEANYMESH_GITHUB_RAW_URL's mirror) into the task's scratch folder: one file, not the package's
    shallow clone of the whole repository per object. Its sha256 must equal the annotation's.
  Candidates without a metadata record, and those with fewer animations than `min_animations`, are
    counted, not given audit rows (millions of them); every later rule gives a row with its reason.
  uid: the object's sha256 (Objaverse-XL is deduplicated by content; a clip key must be a safe name).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

from curation.sources.base import AssetTask, Source, seeded_order
from curation.sources.objaverse import FetchError, download_url

HF_XL_URL = "https://huggingface.co/datasets/allenai/objaverse-xl/resolve/main/"
XL_URL_ENV = "DRIVEANYMESH_OBJAVERSE_XL_URL"
RAW_URL = "https://raw.githubusercontent.com/"
RAW_URL_ENV = "DRIVEANYMESH_GITHUB_RAW_URL"
COLUMNS = ["fileIdentifier", "source", "license", "fileType", "sha256"]
# in the order applied; the first three are counted only (see Decisions)
RULES = ("file_type", "no_metadata", "not_animated", "license", "too_many_vertices", "too_many_faces",
         "duplicate")
BLOB = re.compile(r"https://github\.com/([^/]+)/([^/]+)/blob/([0-9a-f]{7,40})/(.+)")


@dataclass
class ObjaverseXLSettings:
    annotations_dir: str = "~/.objaverse"   # the package's download_dir: <dir>/<source>/<source>.parquet
    sources: list[str] = field(default_factory=lambda: ["github"])
    file_types: list[str] = field(default_factory=lambda: ["glb", "fbx", "blend", "usdz", "usd", "usda", "usdc"])
    # JSON lines or parquet of the rendering script's metadata records (see above)
    animation_metadata: str = "~/.objaverse/objaverse-xl-metadata.jsonl"
    min_animations: int = 1
    # GitHub's licence names (its licenses API) that allow publishing derived data with attribution
    licenses: list[str] = field(default_factory=lambda: [
        "MIT License", "Apache License 2.0", "BSD 2-Clause \"Simplified\" License",
        "BSD 3-Clause \"New\" or \"Revised\" License", "ISC License", "The Unlicense",
        "Creative Commons Zero v1.0 Universal", "Creative Commons Attribution 4.0 International"])
    max_vertices: int = 500_000
    max_faces: int = 500_000
    limit: int = 0
    shuffle_seed: int = 0
    uids_file: str = ""                     # one sha256 per line: consider only these
    download_timeout_s: float = 60.0
    download_retries: int = 3

    def validate(self) -> None:
        for key in ("min_animations", "max_vertices", "max_faces", "limit", "download_retries"):
            if getattr(self, key) < 0:
                raise ValueError(f"source.objaverse_xl.{key} must be >= 0, got {getattr(self, key)}")
        if not set(self.sources) <= {"github", "sketchfab", "thingiverse", "smithsonian"}:
            raise ValueError(f"source.objaverse_xl.sources: {self.sources} (github, sketchfab, thingiverse, "
                             "smithsonian)")
        if "sketchfab" in self.sources:
            raise ValueError("source.objaverse_xl.sources: sketchfab rows are Objaverse 1.0; use the "
                             "objaverse source for them")
        if not self.animation_metadata:
            raise ValueError("source.objaverse_xl.animation_metadata: Objaverse-XL's annotations carry no "
                             "animation counts; give the per-object metadata records of its rendering script")


@dataclass
class Selection:
    tasks: list[AssetTask]
    rejected: list[dict]
    counts: dict[str, int]


NOT_ANIMATED = {"animation_count": 0}  # one shared record for every object below min_animations


def read_metadata(path: str, min_animations: int = 1) -> tuple[dict[str, dict], dict[str, dict]]:
    """The metadata records by sha256 and by file_identifier, each reduced to the counts read here;
    the (many) records with too few animations all share NOT_ANIMATED, so they cost a key each."""
    keep = ("animation_count", "armature_count", "shape_key_count", "vert_count", "poly_count")
    path = os.path.expanduser(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        batches = (b.to_pylist() for b in pq.ParquetFile(path).iter_batches())
    else:
        def batches():
            with open(path) as f:
                yield from ([json.loads(ln)] for ln in f if ln.strip())
        batches = batches()
    by_sha, by_id = {}, {}
    for batch in batches:
        for r in batch:
            slim = ({k: r.get(k) for k in keep} if (r.get("animation_count") or 0) >= min_animations
                    else NOT_ANIMATED)
            if r.get("sha256"):
                by_sha[r["sha256"]] = slim
            elif r.get("file_identifier"):  # by identifier only where the record has no hash
                by_id[r["file_identifier"]] = slim
    return by_sha, by_id


def annotation_path(settings: ObjaverseXLSettings, source: str) -> str:
    """The source's parquet in the package's layout, downloaded first when missing."""
    path = os.path.join(os.path.expanduser(settings.annotations_dir), source, f"{source}.parquet")
    if not os.path.exists(path):
        base = os.environ.get(XL_URL_ENV) or HF_XL_URL
        os.makedirs(os.path.dirname(path), exist_ok=True)
        download_url(f"{base.rstrip('/')}/{source}/{source}.parquet", path, settings.download_timeout_s,
                     settings.download_retries, f"objaverse-xl {source} annotations")
    return path


def select(settings: ObjaverseXLSettings, kind: str = "objaverse-xl") -> Selection:
    """The animated candidates, in a seeded shuffle cut to `limit` (a smaller limit is a prefix)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curation import audit  # here: the config imports this module, keep it light

    settings.validate()
    if not os.path.exists(os.path.expanduser(settings.animation_metadata)):
        raise FileNotFoundError(f"source.objaverse_xl.animation_metadata {settings.animation_metadata!r}: no such "
                                "file. Objaverse-XL's annotations carry no animation counts: give the per-object "
                                "metadata records its rendering script writes (JSON lines or parquet)")
    by_sha, by_id = read_metadata(settings.animation_metadata, settings.min_animations)
    wanted = None
    if settings.uids_file:
        with open(settings.uids_file) as f:
            wanted = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    types = [t.lower() for t in settings.file_types]
    allowed = set(settings.licenses)
    counts = {"considered": 0, "not_listed": 0, **{r: 0 for r in RULES}, "passed": 0, "selected": 0}
    passed, rejected, seen = {}, [], set()
    for source in settings.sources:
        for batch in pq.ParquetFile(annotation_path(settings, source)).iter_batches(columns=COLUMNS):
            counts["considered"] += batch.num_rows
            keep = pc.fill_null(pc.is_in(pc.utf8_lower(batch.column("fileType")), value_set=pa.array(types)), False)
            counts["file_type"] += batch.num_rows - (pc.sum(keep).as_py() or 0)
            for row in batch.filter(keep).to_pylist():
                sha, ident = row["sha256"], row["fileIdentifier"]
                if wanted is not None and sha not in wanted:
                    counts["not_listed"] += 1
                    continue
                meta = by_sha.get(sha) or by_id.get(ident)
                if meta is None:
                    counts["no_metadata"] += 1
                    continue
                animations = meta.get("animation_count") or 0
                if animations < settings.min_animations:
                    counts["not_animated"] += 1
                    continue
                verdict = _check(row, meta, settings, allowed, seen)
                if verdict:
                    rule, reason, values = verdict
                    counts[rule] += 1
                    rejected.append(audit.row(sha, "metadata", "rejected", rule=rule, reasons=[reason],
                                              values=values))
                    continue
                seen.add(sha)
                passed[sha] = _info(row, meta)
    uids = seeded_order(passed, settings.shuffle_seed, settings.limit)
    counts["passed"], counts["selected"] = len(passed), len(uids)
    tasks = [AssetTask(u, kind, license=passed[u]["license"], info=passed[u]) for u in uids]
    return Selection(tasks, sorted(rejected, key=lambda r: r["uid"]), counts)


def _check(row: dict, meta: dict, s: ObjaverseXLSettings, allowed: set, seen: set):
    if row["license"] not in allowed:
        return "license", f"license {row['license']!r} not in the allowed {s.licenses}", {"license": row["license"]}
    verts, faces = meta.get("vert_count"), meta.get("poly_count")
    if verts is not None and verts > s.max_vertices:
        return "too_many_vertices", f"vert_count {verts} > {s.max_vertices}", {"vert_count": verts}
    if faces is not None and faces > s.max_faces:
        return "too_many_faces", f"poly_count {faces} > {s.max_faces}", {"poly_count": faces}
    if row["sha256"] in seen:
        return "duplicate", "the same file (sha256) is listed under another identifier already selected", \
            {"fileIdentifier": row["fileIdentifier"]}
    return None


def _info(row: dict, meta: dict) -> dict:
    m = BLOB.fullmatch(row["fileIdentifier"] or "")
    return {"license": row["license"], "name": os.path.basename(row["fileIdentifier"] or ""),
            "author": m.group(1) if m else None, "viewerUrl": row["fileIdentifier"],
            "fileIdentifier": row["fileIdentifier"], "fileType": row["fileType"].lower(),
            "sha256": row["sha256"], "xl_source": row["source"],
            **{k: meta.get(k) for k in ("animation_count", "armature_count", "shape_key_count")}}


def raw_url(file_identifier: str) -> str:
    """A GitHub blob URL as the raw file at its commit (or under $DRIVEANYMESH_GITHUB_RAW_URL)."""
    m = BLOB.fullmatch(file_identifier)
    if not m:
        raise FetchError(f"{file_identifier!r}: not a GitHub blob URL")
    org, repo, commit, path = m.groups()
    return f"{(os.environ.get(RAW_URL_ENV) or RAW_URL).rstrip('/')}/{org}/{repo}/{commit}/{path}"


def fetch(task: AssetTask, settings: ObjaverseXLSettings, work: str) -> str:
    info = task.info
    if info.get("xl_source") != "github":
        raise FetchError(f"{task.uid}: fetching {info.get('xl_source')!r} objects is not supported")
    dest = os.path.join(work, "input", f"{task.uid}.{info['fileType']}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    download_url(raw_url(info["fileIdentifier"]), dest, settings.download_timeout_s, settings.download_retries,
                 f"objaverse-xl {info['fileIdentifier']}")
    with open(dest, "rb") as f:
        got = hashlib.file_digest(f, "sha256").hexdigest()
    if got != info["sha256"]:
        raise FetchError(f"{info['fileIdentifier']}: sha256 {got} differs from the annotation's {info['sha256']}")
    return dest


CARD_RULES = ("sources", "file_types", "min_animations", "licenses", "max_vertices", "max_faces")


class ObjaverseXLSource(Source):
    kind = "objaverse-xl"
    settings = ObjaverseXLSettings
    section = "objaverse_xl"
    hash_excludes = tuple(f"objaverse_xl.{k}" for k in ("annotations_dir", "animation_metadata", "limit",
                                                        "uids_file", "download_timeout_s", "download_retries"))
    uids_setting = "objaverse_xl.uids_file"
    card_tags = ("objaverse-xl",)

    def validate(self, pipe) -> None:
        pipe.source.objaverse_xl.validate()

    def select(self, pipe, out):
        sel = select(pipe.source.objaverse_xl, self.kind)
        print(f"objaverse-xl: {sel.counts}", flush=True)
        return sel.tasks, sel.rejected

    def fetch(self, task: AssetTask, pipe, work: str) -> str:
        return fetch(task, pipe.source.objaverse_xl, work)

    def card_rules(self, source: dict):
        settings = source.get("objaverse_xl") or {}
        return ("Source rules (Objaverse-XL annotations and per-object metadata, before download):",
                {f"source.objaverse_xl.{k}": settings.get(k) for k in CARD_RULES})


SOURCES = (ObjaverseXLSource(),)
