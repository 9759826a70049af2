"""Objaverse 1.0 as an asset source: pick the animated assets by their annotations, fetch their GLBs.

The `objaverse` package (0.1.7) fixes where everything lives and where it comes from; this module
reads and fills that same cache, at the package's paths and from the package's URLs, for the reasons
given under "Decisions" below.

The package's cache. `objaverse.BASE_PATH` is `~/.objaverse`, fixed from `os.path.expanduser("~")`
(that is, $HOME) when the package is first imported, and everything lives under
`~/.objaverse/hf-objaverse-v1/` (`objaverse._VERSIONED_PATH`):
  object-paths.json.gz          uid -> "glbs/<dir>/<uid>.glb" (dir: 000-000 ... 000-159)
  metadata/<dir>.json.gz        uid -> annotation record, one file per dir
  glbs/<dir>/<uid>.glb          the asset
A file is downloaded from huggingface.co (HF_BASE_URL + the path above, the package's URLs) only
when it does not exist locally; when it exists it is read and nothing touches the network. So a
complete mirror (or the tiny one the tests write) is used offline as is. Because the base path is
fixed at import, this module imports `objaverse` only inside its functions: importing it
(pipeline_config does, through curation.sources, for ObjaverseSettings) neither needs the package nor freezes $HOME.

Decisions.
  Selection reads the package's cache files itself: each metadata/<dir>.json.gz exactly once (the
    uids grouped by dir through object-paths), checked with the rules, only asset_info's fields kept
    for the passing uids and an audit row for the rejected ones, then the file's records dropped, so
    at most one file's full records (~5k) are in memory. Why not load_annotations: it parses
    object-paths.json.gz (800k entries) again on every call and returns full records, so chunked
    calls either held GBs of records or re-read files.
  The uid -> path table is parsed once per process and kept (`_PATH_TABLES`), for `select` and every
    `fetch` in that process. The package's load_objects parses it on every call: ~2 s per fetch at
    800k entries (benchmarks/objaverse_select.py), against well under 1 ms here once warm.
  Downloads are this module's, with urllib, from the package's URLs ($DRIVEANYMESH_OBJAVERSE_URL
    replaces HF_BASE_URL: tests, a mirror). Why not the package's: its urlretrieve has no timeout,
    no retry and no size check, writes object-paths and metadata files straight to their final path
    (a killed first download leaves a truncated file every later run takes for the cache), and gives
    every process fetching one GLB the same temporary name. Here each attempt has a connect and
    per-read timeout (download_timeout_s: a stalled connection fails instead of holding its task
    slot; a slow one that keeps sending is not cut), a failure is retried download_retries times
    after RETRY_BACKOFF_S, then 2x, 4x ... that, a body short of the Content-Length the server
    announced is a failure (never kept), and the bytes go to a temporary name unique to the attempt in
    the destination folder, renamed into place only once complete: the final path holds a whole file
    or nothing, whoever is killed or runs alongside. HTTP 4xx other than 408 and 429 is not retried
    (the file is not there). A missing file still downloads exactly where the package would put it,
    so a user without a mirror needs nothing more.
  evict(path) deletes a GLB once its asset is done (the driver calls it when keep_downloads is off),
    but only one this process's `fetch` downloaded and only inside the package's glbs/ folder: a
    mirror the user filled, or a file another process downloaded and may be reading, is kept.

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

import gzip
import http.client
import json
import os
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from curation.sources.base import AssetTask, Source, seeded_order

# Rules in the order they are applied; the first that fails decides. not_animated is only counted:
# it drops ~97% of Objaverse's 800k assets, and a row per asset would swamp the audit log.
RULES = ("no_annotation", "not_animated", "license", "too_many_vertices", "too_many_faces",
         "scene_category", "scene_tag")

INFO_FIELDS = ("name", "license", "vertexCount", "faceCount", "animationCount")

# The base of every URL objaverse 0.1.7 downloads from (its source spells it out per file).
HF_BASE_URL = "https://huggingface.co/datasets/allenai/objaverse/resolve/main/"
BASE_URL_ENV = "DRIVEANYMESH_OBJAVERSE_URL"  # replaces HF_BASE_URL when set: a loopback server, a mirror
RETRY_BACKOFF_S = 1.0        # wait before the first retry; doubled before each further one
DOWNLOAD_BLOCK = 1 << 20     # at most this many bytes read per call

# Per process: object-paths.json.gz's path -> its parsed uid table (800k entries: ~2 s to parse, a worker's
# RSS ~400 MB with it), and the GLBs this process's fetch downloaded (the only ones evict deletes).
_PATH_TABLES: dict[str, dict[str, str]] = {}
_PATH_TABLES_LOCK = threading.Lock()  # threads of one worker parse it once, not once each
_DOWNLOADED: set[str] = set()


class FetchError(RuntimeError):
    pass


class TruncatedDownload(OSError):
    """The body's size differs from the Content-Length the server announced."""


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
    # Downloads (GLBs, and object-paths / metadata files the cache lacks):
    download_timeout_s: float = 60.0  # connect and per-read timeout of one attempt (not the whole file)
    download_retries: int = 3        # attempts after the first failed one, with exponential backoff
    keep_downloads: bool = False     # False: a GLB fetch downloaded is evicted once its asset is done

    def validate(self) -> None:
        for key in ("min_animations", "max_vertices", "max_faces", "limit", "download_retries"):
            if getattr(self, key) < 0:
                raise ValueError(f"source.objaverse.{key} must be >= 0, got {getattr(self, key)}")
        if not self.download_timeout_s > 0:
            raise ValueError(f"source.objaverse.download_timeout_s must be > 0, got {self.download_timeout_s}")


@dataclass
class Selection:
    uids: list[str]                   # selected, in seeded-shuffle order, cut to the limit
    rejected: list[dict]              # audit rows (stage metadata) of assets a rule after not_animated dropped
    counts: dict[str, int]            # considered, one per rule, passed, selected
    info: dict[str, dict]             # uid -> licence, author and a few annotation fields, for the clip meta


def select(settings: ObjaverseSettings) -> Selection:
    """Apply the metadata rules to Objaverse 1.0's annotations (the objaverse package's cache).

    Deterministic for a given annotation set and settings: the passing uids are sorted, then permuted
    by numpy.random.default_rng(shuffle_seed), then cut to `limit`, so a smaller limit is a prefix of a
    larger one with the same seed.
    """
    settings.validate()
    from curation import audit  # here, not at the top: pipeline_config imports this module, keep it light

    paths = _object_paths(settings)
    candidates = _read_uids_file(settings.uids_file, paths) if settings.uids_file else list(paths)
    candidates = list(dict.fromkeys(candidates))
    counts = {"considered": len(candidates), **{r: 0 for r in RULES}, "passed": 0, "selected": 0}
    # Grouped by metadata file (the dir of the uid's GLB path, as the package finds it), so each file
    # is read once whatever order object-paths lists the uids in.
    by_dir: dict[str, list[str]] = {}
    for uid in candidates:
        by_dir.setdefault(paths[uid].split("/")[1], []).append(uid)
    rejected, info = [], {}
    for dir_id in sorted(by_dir):
        records = _metadata(dir_id, settings)
        for uid in by_dir[dir_id]:
            verdict = check(records.get(uid), settings)
            if verdict is None:
                # the GLB's path travels with the task, so a worker needs no uid -> path table
                info[uid] = {**asset_info(records[uid]), "object_path": paths[uid]}
                continue
            rule, reason, values = verdict
            counts[rule] += 1
            if rule != "not_animated":
                rejected.append(audit.row(uid, "metadata", "rejected", rule=rule, reasons=[reason],
                                          values=values))
        del records  # one file's full records at a time
    passed = sorted(info)
    uids = seeded_order(passed, settings.shuffle_seed, settings.limit)
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


def fetch(uid: str, settings: ObjaverseSettings | None = None, object_path: str | None = None) -> str:
    """Local path of the asset's GLB: the cached file, or downloaded into the package's cache.
    `object_path`: the uid's entry in object-paths.json.gz when the caller has it (the selection puts
    it in each task), so the worker never loads the 800k-entry table (~400 MB per process).

    Raises FetchError naming the uid and the cause: not in Objaverse 1.0, or the download failed
    after settings.download_retries retries.
    """
    settings = settings or ObjaverseSettings()
    rel = object_path
    if rel is not None and not re.fullmatch(r"glbs/[\w.-]+/[\w.-]+\.glb", rel):
        raise FetchError(f"objaverse uid {uid!r}: {rel!r} is not a path in the GLB cache")
    try:
        rel = rel or _object_paths(settings).get(uid)
    except FetchError as exc:  # object-paths.json.gz itself could not be had
        raise FetchError(f"objaverse uid {uid!r}: {exc}") from exc
    if rel is None:
        raise FetchError(f"objaverse uid {uid!r}: not in Objaverse 1.0 (no entry in object-paths.json.gz "
                         f"under {_cache_root()})")
    path = os.path.join(_cache_root(), rel)
    if not os.path.isfile(path):
        _download(rel, path, settings, f"objaverse uid {uid!r}")
        _DOWNLOADED.add(os.path.abspath(path))
    return path


def evict(path: str) -> bool:
    """Delete a GLB this process's `fetch` downloaded, once its asset is done; True if it was deleted.

    A file fetch found already cached (a mirror, another process's download) is kept: False, as for
    one already gone. A path outside the package's glbs/ folder is a ValueError and nothing is deleted.
    """
    glbs = os.path.realpath(os.path.join(_cache_root(), "glbs"))
    real = os.path.realpath(path)
    if real == glbs or os.path.commonpath([glbs, real]) != glbs:
        raise ValueError(f"evict: {path} is not inside the objaverse GLB cache {glbs}; not deleted")
    key = os.path.abspath(path)
    if key not in _DOWNLOADED:
        return False
    _DOWNLOADED.discard(key)
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


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


def _read_uids_file(path: str, paths: dict[str, str]) -> list[str]:
    try:
        with open(path) as f:
            uids = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as exc:
        raise FileNotFoundError(f"source.objaverse.uids_file {path!r}: cannot read ({exc.strerror})") from None
    unknown = [u for u in uids if u not in paths]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ValueError(f"source.objaverse.uids_file {path!r}: {len(unknown)} uid(s) not in Objaverse 1.0: "
                         f"{', '.join(unknown[:5])}{more}")
    return uids


def _cache_root() -> str:
    import objaverse  # here: its cache path is fixed from $HOME at its first import

    return objaverse._VERSIONED_PATH  # the folder every one of its functions reads and writes


def _object_paths(settings: ObjaverseSettings) -> dict[str, str]:
    """object-paths.json.gz as uid -> path in the cache, parsed once per process (downloaded if missing)."""
    path = os.path.join(_cache_root(), "object-paths.json.gz")
    with _PATH_TABLES_LOCK:
        table = _PATH_TABLES.get(path)
        if table is None:
            if not os.path.exists(path):
                _download("object-paths.json.gz", path, settings, "objaverse object-paths.json.gz")
            table = _PATH_TABLES[path] = _read_json_gz(path)
    return table


def _metadata(dir_id: str, settings: ObjaverseSettings) -> dict[str, dict]:
    """One metadata file's records (uid -> annotation), downloaded if missing."""
    rel = f"metadata/{dir_id}.json.gz"
    path = os.path.join(_cache_root(), rel)
    if not os.path.exists(path):
        _download(rel, path, settings, f"objaverse metadata {dir_id}")
    return _read_json_gz(path)


def _read_json_gz(path: str):
    try:
        with gzip.open(path, "rb") as f:
            return json.load(f)
    except (OSError, EOFError, ValueError) as exc:  # e.g. cut short by an older, non-atomic download
        raise FetchError(f"{path}: cannot read ({type(exc).__name__}: {exc}); delete it to download it "
                         "again") from exc


def _download(rel: str, dest: str, settings: ObjaverseSettings, what: str) -> None:
    """Download the cache file `rel` to `dest`, retrying with backoff; FetchError naming `what` at the end."""
    base = os.environ.get(BASE_URL_ENV) or HF_BASE_URL
    download_url(base.rstrip("/") + "/" + rel, dest, settings.download_timeout_s, settings.download_retries, what)


def download_url(url: str, dest: str, timeout_s: float, retries: int, what: str) -> None:
    """Download `url` to `dest` whole or not at all, retrying with backoff (the rules under "Decisions"
    above; other sources download through it too); FetchError naming `what` at the end."""
    attempts = retries + 1
    for attempt in range(attempts):
        if attempt:
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
        try:
            _download_once(url, dest, timeout_s)
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            last = exc
            if exc.code < 500 and exc.code not in (408, 429):  # not there, or not ours: asking again won't help
                break
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut short
            last = exc
    raise FetchError(f"{what}: download failed after {attempt + 1} attempt(s) from {url}: "
                     f"{type(last).__name__}: {last}")


def _download_once(url: str, dest: str, timeout_s: float) -> None:
    """One attempt: the body into a temporary name beside `dest`, renamed onto `dest` only when whole."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    # Unique per attempt, and not *.glb (the package counts glbs/*/*.glb): concurrent downloaders of one
    # file never share a temporary, and a killed one leaves at most this name, never `dest`.
    tmp = f"{dest}.{os.getpid()}-{secrets.token_hex(4)}.part"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "xb") as f:
            expected = resp.headers.get("Content-Length", "").strip()
            size = 0
            # read1: what has arrived, as it arrives. A connection closed early just ends this loop,
            # hence the count below.
            while block := resp.read1(DOWNLOAD_BLOCK):
                f.write(block)
                size += len(block)
        if expected.isdigit() and size != int(expected):
            raise TruncatedDownload(f"got {size} bytes, the server announced Content-Length {expected}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# The annotation rules the dataset card lists (applied before download).
CARD_RULES = ("licenses", "min_animations", "max_vertices", "max_faces", "exclude_categories", "exclude_tags")


class ObjaverseSource(Source):
    kind = "objaverse"
    settings = ObjaverseSettings
    section = "objaverse"
    # which uids and how many are taken, and how they are downloaded: not what a clip is
    hash_excludes = tuple(f"objaverse.{k}" for k in ("limit", "uids_file", "download_timeout_s",
                                                     "download_retries", "keep_downloads"))
    hashed_when_inactive = True  # every output hashed before sources were plugins included this section
    uids_setting = "objaverse.uids_file"
    card_tags = ("objaverse",)

    def validate(self, pipe) -> None:
        pipe.source.objaverse.validate()

    def select(self, pipe, out) -> tuple[list[AssetTask], list[dict]]:
        sel = select(pipe.source.objaverse)
        tasks = [AssetTask(uid, self.kind, license=sel.info.get(uid, {}).get("license"), info=sel.info.get(uid, {}))
                 for uid in sel.uids]
        return tasks, sel.rejected

    def fetch(self, task: AssetTask, pipe, work: str) -> str:
        return fetch(task.uid, pipe.source.objaverse, task.info.get("object_path"))

    def release(self, task: AssetTask, pipe, path: str) -> None:
        if not pipe.source.objaverse.keep_downloads:
            evict(path)

    def card_rules(self, source: dict) -> tuple[str, dict] | None:
        settings = source.get("objaverse") or {}
        return ("Source rules (Objaverse annotations, before download):",
                {f"source.objaverse.{k}": settings.get(k) for k in CARD_RULES})


SOURCES = (ObjaverseSource(),)
