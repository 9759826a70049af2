"""Objaverse 1.0 as an asset source: pick the animated assets by their annotations, fetch their GLBs.

Everything goes through the `objaverse` package (0.1.7) itself: `load_uids()`, `load_annotations(uids)`
and `load_objects(uids, download_processes=1)`; nothing here reimplements its downloads or its cache.

The package's cache. `objaverse.BASE_PATH` is `~/.objaverse`, fixed from `os.path.expanduser("~")`
(that is, $HOME) when the package is first imported, and everything lives under
`~/.objaverse/hf-objaverse-v1/`:
  object-paths.json.gz          uid -> "glbs/<dir>/<uid>.glb" (dir: 000-000 ... 000-159)
  metadata/<dir>.json.gz        uid -> annotation record, one file per dir
  glbs/<dir>/<uid>.glb          the asset
Each function downloads a file from huggingface.co only when that file does not exist locally
(`os.path.exists`); when it exists it is read and nothing touches the network. So a complete
mirror (or the tiny one the tests write) is used offline as is. One trap: `load_annotations(None)`
walks all 160 metadata files and downloads any that are missing, so `select` always passes an
explicit uid list, which makes the package read only the metadata files those uids live in.
Because the base path is fixed at import, this module imports `objaverse` only inside `select` and
`fetch`: importing it (pipeline_config does, for ObjaverseSettings) neither needs the package nor
freezes $HOME.

The annotation records are Sketchfab's model records (api.sketchfab.com/v3/models) as Objaverse
scraped them. The fields read here:
  animationCount  number of animations in the model. This is what Sketchfab's "Animated" label and
                  search filter are (animationCount > 0), i.e. the paper's "assets labelled
                  Animated" (sec. 3.2); the records carry no other animation marker. Diffusion4D's
                  animated Objaverse 1.0 list is built the same way (animationCount != 0).
  license         short Creative Commons code: "by", "by-sa", "by-nc", "by-nc-sa", "cc0" (the five
                  the Objaverse 1.0 dataset card lists; ND licences are not in Objaverse 1.0).
  vertexCount, faceCount
                  the model's counts as Sketchfab reports them (top level; `archives.glb` has the
                  downloaded GLB's counts, usually higher since the GLB splits vertices at seams).
  categories      list of {"name": "Places & travel", "uri": ...} (Sketchfab's 18 categories);
  tags            list of {"name": "scan", "slug": "scan", "uri": ...}.
  name, user.displayName / user.username, viewerUrl: kept for the clip's attribution (CC BY
                  requires crediting the author).
Categories and tags are matched by slug: the record's "slug" where it has one, else the name
slugified ("Places & travel" -> "places-travel"), which gives Sketchfab's category slugs.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

# Rules in the order they are applied; the first that fails decides. not_animated is only counted:
# it drops ~97% of Objaverse's 800k assets, and a row per asset would swamp the audit log.
RULES = ("no_annotation", "not_animated", "license", "too_many_vertices", "too_many_faces",
         "scene_category", "scene_tag")

# load_annotations is called on this many uids at a time and only the few fields used are kept: the
# full records of all 800k assets would take several GB. Chunks follow object-paths order, which
# groups uids by metadata file, so each metadata file is read about once.
ANNOTATION_CHUNK = 50_000

INFO_FIELDS = ("name", "license", "vertexCount", "faceCount", "animationCount")


class FetchError(RuntimeError):
    pass


@dataclass
class ObjaverseSettings:
    # Licences whose terms allow publishing derived data (renders, point-cloud sequences) for any use,
    # with the licence and author recorded per clip. Add "by-nc", "by-nc-sa" for a non-commercial build;
    # never an ND licence: the clips are adaptations.
    licenses: list[str] = field(default_factory=lambda: ["by", "by-sa", "cc0"])
    min_animations: int = 1          # animationCount at least this: Sketchfab's "Animated" label
    max_vertices: int = 500_000      # vertexCount above this: too heavy to import, subdivide and render
    max_faces: int = 500_000         # faceCount above this: same
    # Sketchfab category slugs that mark scenes and scans rather than single objects: buildings and
    # interiors, landscapes and cities, photogrammetry of sites and artefacts.
    exclude_categories: list[str] = field(default_factory=lambda: [
        "architecture", "places-travel", "cultural-heritage-history"])
    # Tag slugs that mark scenes (a set, a room, a terrain) or scans (partial, noisy geometry).
    exclude_tags: list[str] = field(default_factory=lambda: [
        "scene", "environment", "room", "interior", "diorama", "terrain", "landscape", "city",
        "scan", "3dscan", "3d-scan", "photogrammetry", "lidar", "pointcloud", "point-cloud"])
    limit: int = 0                   # keep the first N selected uids (after the shuffle); 0 = all
    shuffle_seed: int = 0            # seed of the numpy shuffle of the selected uids
    uids_file: str = ""              # text file, one uid per line: consider only these; "" = all

    def validate(self) -> None:
        for key in ("min_animations", "max_vertices", "max_faces", "limit"):
            if getattr(self, key) < 0:
                raise ValueError(f"source.objaverse.{key} must be >= 0, got {getattr(self, key)}")


@dataclass
class Selection:
    uids: list[str]                   # selected, in seeded-shuffle order, cut to the limit
    rejected: list[dict]              # audit rows (stage metadata) of assets a rule after not_animated dropped
    counts: dict[str, int]            # considered, one per rule, passed, selected
    info: dict[str, dict]             # uid -> licence, author and a few annotation fields, for the clip meta


def select(settings: ObjaverseSettings) -> Selection:
    """Apply the metadata rules to Objaverse 1.0's annotations (through the objaverse package).

    Deterministic for a given annotation set and settings: the passing uids are sorted, then permuted
    by numpy.random.default_rng(shuffle_seed), then cut to `limit`, so a smaller limit is a prefix of a
    larger one with the same seed.
    """
    settings.validate()
    import objaverse

    from curation import audit  # here, not at the top: pipeline_config imports this module, keep it light

    all_uids = objaverse.load_uids()
    candidates = _read_uids_file(settings.uids_file, all_uids) if settings.uids_file else all_uids
    candidates = list(dict.fromkeys(candidates))  # the package's early stop counts on unique uids
    counts = {"considered": len(candidates), **{r: 0 for r in RULES}, "passed": 0, "selected": 0}
    rejected, info = [], {}
    for start in range(0, len(candidates), ANNOTATION_CHUNK):
        chunk = candidates[start:start + ANNOTATION_CHUNK]
        annotations = objaverse.load_annotations(chunk)
        for uid in chunk:
            verdict = check(annotations.get(uid), settings)
            if verdict is None:
                info[uid] = asset_info(annotations[uid])
                continue
            rule, reason, values = verdict
            counts[rule] += 1
            if rule != "not_animated":
                rejected.append(audit.row(uid, "metadata", "rejected", rule=rule, reasons=[reason],
                                          values=values))
        del annotations
    passed = sorted(info)
    order = np.random.default_rng(settings.shuffle_seed).permutation(len(passed))
    uids = [passed[i] for i in order]
    if settings.limit:
        uids = uids[:settings.limit]
    counts["passed"], counts["selected"] = len(passed), len(uids)
    rejected.sort(key=lambda r: r["uid"])
    return Selection(uids=uids, rejected=rejected, counts=counts, info={u: info[u] for u in uids})


def check(ann: dict | None, s: ObjaverseSettings) -> tuple[str, str, dict] | None:
    """The first rule one annotation record fails, as (rule, reason, values read), or None if it passes."""
    if ann is None:
        return "no_annotation", "no annotation record in the Objaverse metadata", {}
    animations = ann.get("animationCount") or 0
    if animations < s.min_animations:
        return ("not_animated", f"animationCount {animations} < {s.min_animations}",
                {"animationCount": animations, "min_animations": s.min_animations})
    lic = ann.get("license")
    if lic not in s.licenses:
        return ("license", f"license {lic!r} not in the allowed {s.licenses}",
                {"license": lic, "allowed": list(s.licenses)})
    # Counts Sketchfab did not report (None) are not judged here; the render stage sees the real mesh.
    verts, faces = ann.get("vertexCount"), ann.get("faceCount")
    if verts is not None and verts > s.max_vertices:
        return ("too_many_vertices", f"vertexCount {verts} > {s.max_vertices}",
                {"vertexCount": verts, "max_vertices": s.max_vertices})
    if faces is not None and faces > s.max_faces:
        return ("too_many_faces", f"faceCount {faces} > {s.max_faces}",
                {"faceCount": faces, "max_faces": s.max_faces})
    categories = _slugs(ann.get("categories"))
    hit = sorted(set(categories) & {slugify(c) for c in s.exclude_categories})
    if hit:
        return ("scene_category", f"category {', '.join(hit)} marks a scene or scan",
                {"categories": categories, "matched": hit})
    tags = _slugs(ann.get("tags"))
    hit = sorted(set(tags) & {slugify(t) for t in s.exclude_tags})
    if hit:
        return ("scene_tag", f"tag {', '.join(hit)} marks a scene or scan",
                {"tags": tags, "matched": hit})
    return None


def asset_info(ann: dict) -> dict:
    user = ann.get("user") or {}
    return {**{k: ann.get(k) for k in INFO_FIELDS},
            "categories": _slugs(ann.get("categories")), "tags": _slugs(ann.get("tags")),
            "author": user.get("displayName") or user.get("username"), "viewerUrl": ann.get("viewerUrl")}


def fetch(uid: str) -> str:
    """Local path of the asset's GLB: the cached file, or downloaded by objaverse.load_objects."""
    import objaverse

    try:
        with warnings.catch_warnings():  # an unknown uid is a warning there; here it is the error below
            warnings.simplefilter("ignore")
            paths = objaverse.load_objects([uid], download_processes=1)
    except Exception as exc:  # network errors and the like: name the asset
        raise FetchError(f"objaverse uid {uid!r}: download failed: {type(exc).__name__}: {exc}") from exc
    path = paths.get(uid)
    if path is None:
        raise FetchError(f"objaverse uid {uid!r}: not in Objaverse 1.0 (no entry in object-paths.json.gz "
                         f"under {objaverse.BASE_PATH})")
    if not os.path.isfile(path):
        raise FetchError(f"objaverse uid {uid!r}: objaverse returned {path}, which is not a file")
    return path


def slugify(text: str) -> str:
    """Sketchfab-style slug: lower case, runs of anything but letters and digits become one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _slugs(entries) -> list[str]:
    out = []
    for e in entries or []:
        if isinstance(e, dict):
            slug = e.get("slug") or slugify(e.get("name") or "")
        else:  # a bare string, should a record carry one
            slug = slugify(e)
        if slug:
            out.append(slug)
    return out


def _read_uids_file(path: str, all_uids: list[str]) -> list[str]:
    try:
        with open(path) as f:
            uids = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as exc:
        raise FileNotFoundError(f"source.objaverse.uids_file {path!r}: cannot read ({exc.strerror})") from None
    known = set(all_uids)
    unknown = [u for u in uids if u not in known]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ValueError(f"source.objaverse.uids_file {path!r}: {len(unknown)} uid(s) not in Objaverse 1.0: "
                         f"{', '.join(unknown[:5])}{more}")
    return uids
