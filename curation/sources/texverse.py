"""TexVerse-Animation as an asset source: the animated subset of TexVerse (Sketchfab models kept as the
files their authors uploaded), selected by TexVerse's own metadata and fetched one file at a time.

Where things are (TexVerse's published layout; the tests write a mirror of it):
  metadata.json          TexVerse's metadata (huggingface.co/datasets/YiboZhang2001/TexVerse, ~840 MB):
                         one JSON object keyed by the Sketchfab uid; each record has `name`, `license`
                         (Sketchfab's label, e.g. "CC Attribution", or its {label, slug} object),
                         `animation` (the animation count), `isRigged`, `faceCount`, `tags`, ...
  TexVerse-Animation_id_list.txt
                         the animated subset (54,430 uids), one 32-hex uid per line
  model_paths.txt        the files of YiboZhang2001/TexVerse-Skeleton-Animation, one path per line under
                         that repository; a file is `<uid>.<ext>` or `<uid>.zip` holding the original
                         upload (FBX, glTF/GLB, DAE, .blend, ...)
Files are downloaded from `files_url` + the path (or $DRIVEANYMESH_TEXVERSE_URL + the path).

Decisions.
  metadata.json is streamed (ijson) and only the listed uids' records are kept: parsed whole it is
    several GB of Python objects on the driver.
  Every listed uid gets a decision: one the metadata lacks, one with no animation in it, a licence
    outside `licenses`, too many faces, or no file in model_paths, each an audit row with its reason
    (the list is 54k long: rows, not counts).
  A zip is unpacked into the task's scratch folder (no member outside it, at most
    `max_unzipped_bytes`), and its model is the file of the first format Blender imports, in
    render/formats.py's order (.glb before .fbx ...); a zip holding only formats Blender cannot import
    gives that file, which the render records as `unsupported_format`. Nothing is redistributed: the
    outputs carry uid, licence and the Sketchfab link.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field

from curation.sources.base import AssetTask, Source, seeded_order
from curation.sources.objaverse import FetchError, download_url
from render.formats import ASSET_FILES

FILES_URL = "https://huggingface.co/datasets/YiboZhang2001/TexVerse-Skeleton-Animation/resolve/main/"
FILES_URL_ENV = "DRIVEANYMESH_TEXVERSE_URL"
RULES = ("no_metadata", "not_animated", "license", "too_many_faces", "no_file")


@dataclass
class TexVerseSettings:
    metadata: str = "~/.texverse/metadata.json"
    id_list: str = "~/.texverse/TexVerse-Animation_id_list.txt"
    model_paths: str = "~/.texverse/model_paths.txt"
    files_url: str = FILES_URL
    min_animations: int = 1
    # Sketchfab's licence labels (and slugs) that allow publishing derived data with attribution
    licenses: list[str] = field(default_factory=lambda: ["CC Attribution", "CC Attribution-ShareAlike",
                                                         "CC0 Public Domain", "by", "by-sa", "cc0"])
    max_faces: int = 500_000
    max_unzipped_bytes: int = 2 << 30
    limit: int = 0
    shuffle_seed: int = 0
    uids_file: str = ""
    download_timeout_s: float = 60.0
    download_retries: int = 3

    def validate(self) -> None:
        for key in ("min_animations", "max_faces", "max_unzipped_bytes", "limit", "download_retries"):
            if getattr(self, key) < 0:
                raise ValueError(f"source.texverse.{key} must be >= 0, got {getattr(self, key)}")


def _lines(path: str) -> list[str]:
    with open(os.path.expanduser(path)) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]


def _license(record: dict) -> str | None:
    lic = record.get("license")
    if isinstance(lic, dict):
        return lic.get("label") or lic.get("slug")
    return lic


def read_records(path: str, uids: set[str]) -> dict[str, dict]:
    """The records of `uids` from TexVerse's metadata.json, streamed."""
    import ijson

    keep = {}
    with open(os.path.expanduser(path), "rb") as f:
        for uid, record in ijson.kvitems(f, "", use_float=True):
            if uid in uids:
                keep[uid] = record
    return keep


def select(s: TexVerseSettings, kind: str = "texverse") -> tuple[list[AssetTask], list[dict], dict]:
    from curation import audit  # here: the config imports this module, keep it light

    s.validate()
    listed = list(dict.fromkeys(_lines(s.id_list)))
    if s.uids_file:
        wanted = set(_lines(s.uids_file))
        listed = [u for u in listed if u in wanted]
    files = {}
    for p in _lines(s.model_paths):
        files.setdefault(os.path.basename(p).split(".")[0], p)  # <uid>.<ext> or <uid>.zip
    records = read_records(s.metadata, set(listed))
    allowed = set(s.licenses)
    counts = {"considered": len(listed), **{r: 0 for r in RULES}, "passed": 0, "selected": 0}
    rejected, passed = [], {}
    for uid in listed:
        rec = records.get(uid)
        verdict = _check(uid, rec, files, s, allowed)
        if verdict:
            rule, reason, values = verdict
            counts[rule] += 1
            rejected.append(audit.row(uid, "metadata", "rejected", rule=rule, reasons=[reason], values=values))
            continue
        passed[uid] = {"license": _license(rec), "name": rec.get("name"),
                       "author": (rec.get("user") or {}).get("displayName") or rec.get("author"),
                       "viewerUrl": rec.get("viewerUrl") or f"https://sketchfab.com/3d-models/{uid}",
                       "animations": rec.get("animation"), "faceCount": rec.get("faceCount"),
                       "file": files[uid]}
    uids = seeded_order(passed, s.shuffle_seed, s.limit)
    counts["passed"], counts["selected"] = len(passed), len(uids)
    tasks = [AssetTask(u, kind, license=passed[u]["license"], info=passed[u]) for u in uids]
    return tasks, rejected, counts


def _check(uid: str, rec: dict | None, files: dict, s: TexVerseSettings, allowed: set):
    if rec is None:
        return "no_metadata", "listed as animated but no record in metadata.json", {}
    animations = rec.get("animation") or 0
    if animations < s.min_animations:
        return "not_animated", f"animation {animations} < {s.min_animations}", {"animation": animations}
    lic = _license(rec)
    if lic not in allowed:
        return "license", f"license {lic!r} not in the allowed {s.licenses}", {"license": lic}
    faces = rec.get("faceCount")
    if faces is not None and faces > s.max_faces:
        return "too_many_faces", f"faceCount {faces} > {s.max_faces}", {"faceCount": faces}
    if uid not in files:
        return "no_file", "no file of this uid in model_paths.txt", {}
    return None


def model_in(folder: str) -> str:
    """The model file of an unpacked upload: the first of render/formats.py's order found."""
    found = [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
             if n.lower().endswith(ASSET_FILES) and not n.startswith("._")]
    if not found:
        raise FetchError(f"{folder}: the archive holds no 3D file")
    rank = {ext: i for i, ext in enumerate(ASSET_FILES)}
    return min(found, key=lambda p: (rank[os.path.splitext(p)[1].lower()], p.count(os.sep), p))


def unzip(path: str, dest: str, max_bytes: int) -> str:
    with zipfile.ZipFile(path) as z:
        members = z.infolist()
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise FetchError(f"{path}: unpacks to {total} bytes, over max_unzipped_bytes {max_bytes}")
        root = os.path.realpath(dest)
        for m in members:
            target = os.path.realpath(os.path.join(dest, m.filename))
            if os.path.commonpath([root, target]) != root:
                raise FetchError(f"{path}: member {m.filename!r} would land outside the folder")
        z.extractall(dest)
    return model_in(dest)


def fetch(task: AssetTask, s: TexVerseSettings, work: str) -> str:
    rel = task.info["file"]
    base = os.environ.get(FILES_URL_ENV) or s.files_url
    dest = os.path.join(work, "input", os.path.basename(rel))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    download_url(f"{base.rstrip('/')}/{rel}", dest, s.download_timeout_s, s.download_retries,
                 f"texverse {task.uid}")
    if dest.lower().endswith(".zip"):
        try:
            return unzip(dest, os.path.join(work, "input", task.uid), s.max_unzipped_bytes)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"texverse {task.uid}: {rel}: not a zip archive ({exc})") from exc
    return dest


CARD_RULES = ("min_animations", "licenses", "max_faces")


class TexVerseSource(Source):
    kind = "texverse"
    settings = TexVerseSettings
    section = "texverse"
    hash_excludes = tuple(f"texverse.{k}" for k in ("metadata", "id_list", "model_paths", "files_url", "limit",
                                                    "uids_file", "download_timeout_s", "download_retries"))
    uids_setting = "texverse.uids_file"
    card_tags = ("texverse",)

    def validate(self, pipe) -> None:
        pipe.source.texverse.validate()

    def select(self, pipe, out):
        tasks, rejected, counts = select(pipe.source.texverse, self.kind)
        print(f"texverse: {counts}", flush=True)
        return tasks, rejected

    def fetch(self, task: AssetTask, pipe, work: str) -> str:
        return fetch(task, pipe.source.texverse, work)

    def card_rules(self, source: dict):
        settings = source.get("texverse") or {}
        return ("Source rules (TexVerse metadata, before download):",
                {f"source.texverse.{k}": settings.get(k) for k in CARD_RULES})


SOURCES = (TexVerseSource(),)
