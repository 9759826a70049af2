"""`DATASET_CARD.md`: a run's dataset card in the layout dataset hubs read (Hugging Face: YAML front
matter, then Markdown sections), from its splits (`curation/splits.py`) and run.json.

Sections: summary, counts per label and split, licences, the attribution list CC BY requires (one
line per accepted asset, "unknown" where the source recorded nothing), the pipeline settings and
filter thresholds, the config hash, and how to reproduce the split (the source of
`curation.split.split_of` itself, so the card cannot drift from the code that assigned it).
"""
from __future__ import annotations

import inspect
import json
import re

import yaml

from curation import split as split_module
from curation.splits import LABELS, SPLIT_NAMES, read_run_info, read_splits
from dataset.storage import Store

CARD = "DATASET_CARD.md"
# Objaverse's (Sketchfab's) licence codes -> the hub's licence identifiers and their names
HUB_LICENSES = {"by": "cc-by-4.0", "by-sa": "cc-by-sa-4.0", "by-nc": "cc-by-nc-4.0", "by-nc-sa": "cc-by-nc-sa-4.0",
                "cc0": "cc0-1.0"}
LICENSE_NAMES = {"by": "CC BY 4.0", "by-sa": "CC BY-SA 4.0", "by-nc": "CC BY-NC 4.0", "by-nc-sa": "CC BY-NC-SA 4.0",
                 "cc0": "CC0 1.0"}
# The hub's size buckets, by number of samples (clips)
SIZE_BUCKETS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                (10_000_000, "1M<n<10M"))
SETTINGS_SECTIONS = ("keyframes", "render", "dense", "split")  # beside filters; ray: and shards: say where and how packed


def write_card(store: Store | str) -> str:
    """DATASET_CARD.md in the run's output (one atomic write through the store); returns its URL."""
    store = store if isinstance(store, Store) else Store(store)
    store.write(CARD, dataset_card(read_splits(store), read_run_info(store)).encode())
    return store.url(CARD)


def dataset_card(splits: dict, run: dict) -> str:
    pipe = run.get("pipeline") or {}
    parts = [_front_matter(splits, pipe), _summary(splits, pipe), _counts(splits), _licences(splits),
             _attribution(splits), _settings(pipe), _config(splits, run), _reproduce(splits)]
    return "\n".join(parts)


def _front_matter(splits: dict, pipe: dict) -> str:
    licences = sorted({hub_license(a["license"]) for a in splits["assets"]}) or ["unknown"]
    tags = ["4d", "mesh", "animation", "point-cloud", "multi-view", "webdataset"]
    source = _source(pipe)
    tags += list(source.card_tags) if source else []
    meta = {"license": licences, "pretty_name": f"DriveAnyMesh 4D clips ({splits['pipeline']})",
            "size_categories": [size_category(splits["counts"]["clips"])], "tags": tags,
            "configs": _configs(splits)}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _configs(splits: dict) -> list[dict]:
    """One hub config per label, its splits pointing at the shards (shards/<label>/<split>-NNNNNN.tar)."""
    per = splits["counts"]["by_label_split"]
    out = []
    for label in LABELS:
        files = [{"split": s, "path": f"shards/{label}/{s}-*.tar"} for s in SPLIT_NAMES
                 if per.get(label, {}).get(s, {}).get("clips")]
        if files:
            out.append({"config_name": label, "data_files": files})
    return out


def hub_license(code: str | None) -> str:
    """The hub's identifier of an Objaverse licence code: "unknown" when none was recorded, "other"
    for a code this table lacks."""
    return "unknown" if not code else HUB_LICENSES.get(code, "other")


def size_category(clips: int) -> str:
    return next((name for bound, name in SIZE_BUCKETS if clips < bound), "n>10M")


def _summary(splits: dict, pipe: dict) -> str:
    c = splits["counts"]
    keyframes, render = pipe.get("keyframes") or {}, pipe.get("render") or {}
    source = (pipe.get("source") or {}).get("kind", "?")
    return (f"# DriveAnyMesh 4D clips: `{splits['pipeline']}`\n\n## Summary\n\n"
            f"{c['assets']} animated assets (source: `{source}`) made into {c['clips']} clips by the DriveAnyMesh "
            f"curation pipeline (a reimplementation of the dataset of *Drive Any Mesh*). A clip is one animation "
            f"window of one asset: {keyframes.get('count', '?')} keyframes of vertex positions in a normalized "
            f"space (`verts.npy`, T x V x 3 float32; `faces.npy`), {render.get('views', '?')} views per keyframe "
            f"at {render.get('resolution', '?')} px (`frameNN.png`, RGBA), the cameras (`cameras.json`, OpenCV "
            f"convention) and its metadata (`meta.json`: licence, author, settings, filter values).\n\n"
            f"Clips are WebDataset samples in `shards/<label>/<split>-NNNNNN.tar`, listed with their keys and "
            f"sha256 in `manifest.json`. `splits.json` lists every asset with its label, split, clip keys, "
            f"licence and author; `driveanymesh audit OUT uids --split test` prints one list. Labels: "
            f"`textured` (an image with colour variation on the surface) and `textureless`.\n")


def _counts(splits: dict) -> str:
    per = splits["counts"]["by_label_split"]
    lines = ["## Counts\n", "| label | split | assets | clips |", "| --- | --- | ---: | ---: |"]
    for label, by_split in per.items():
        for split, cell in by_split.items():
            lines.append(f"| {label} | {split} | {cell['assets']} | {cell['clips']} |")
    c = splits["counts"]
    lines.append(f"| all | all | {c['assets']} | {c['clips']} |")
    o = c.get("overridden") or {}
    if o.get("accepted") or o.get("rejected"):
        lines += ["", f"A person decided over the filter rules for {o.get('accepted', 0) + o.get('rejected', 0)} "
                      f"clips (`overrides.jsonl`, with each decision's reason, author and time): "
                      f"{o.get('accepted', 0)} accepted that a rule rejected, {o.get('rejected', 0)} rejected "
                      f"that the rules accepted."]
    return "\n".join(lines) + "\n"


def _licences(splits: dict) -> str:
    lines = ["## Licences\n", "Each clip is an adaptation of its asset and keeps the asset's licence (in `splits.json` "
             "and the clip's `meta.json`).\n", "| licence | hub identifier | assets |", "| --- | --- | ---: |"]
    for code, n in splits["counts"]["licenses"].items():
        code = None if code == "unknown" else code
        lines.append(f"| {license_name(code)} | {hub_license(code)} | {n} |")
    return "\n".join(lines) + "\n"


def license_name(code: str | None) -> str:
    return "unknown" if not code else LICENSE_NAMES.get(code, code)


def _attribution(splits: dict) -> str:
    lines = ["## Attribution\n", "CC BY and CC BY-SA require crediting each work: name, author, link and licence, one "
             "line per accepted asset (\"unknown\" where the source recorded none).\n"]
    for a in splits["assets"]:
        lines.append(f"- {_md(a['name'])} by {_md(a['author'])}, {_link(a['viewerUrl'])}, "
                     f"{license_name(a['license'])} (uid `{a['uid']}`)")
    if not splits["assets"]:
        lines.append("(no accepted assets)")
    return "\n".join(lines) + "\n"


def _md(text) -> str:
    """A name or author as plain Markdown text on one line ("unknown" when missing)."""
    if text is None or not str(text).strip():
        return "unknown"
    return re.sub(r"([\\`*_\[\]<>|#~!])", r"\\\1", " ".join(str(text).split()))


def _link(url) -> str:
    # only a plain http(s) URL becomes a link: anything else could break the line's Markdown
    return f"<{url}>" if isinstance(url, str) and re.fullmatch(r"https?://[^\s<>]+", url) else "unknown"


def _settings(pipe: dict) -> str:
    lines = ["## Pipeline settings\n", "From the run's `run.json` (the resolved pipeline). Filter thresholds (a clip "
             "is rejected by the first rule it fails; `curation/filters/` gives the measurements behind each):\n"]
    lines += _table(_flat(pipe.get("filters") or {}, "filters."))
    source = pipe.get("source") or {}
    kind = _source(pipe)
    rules = kind.card_rules(source) if kind else None
    if rules:
        lines += ["", f"{rules[0]}\n"]
        lines += _table(rules[1])
    lines += ["", "Keyframes, rendering, dense points and split:\n"]
    settings = {"seed": pipe.get("seed")}
    for section in SETTINGS_SECTIONS:
        settings.update(_flat(pipe.get(section) or {}, f"{section}."))
    lines += _table(settings)
    return "\n".join(lines) + "\n"


def _source(pipe: dict):
    """The run's source (curation.sources), or None for a kind this version does not have."""
    from curation import sources

    try:
        return sources.get((pipe.get("source") or {}).get("kind", ""))
    except ValueError:
        return None


def _table(settings: dict) -> list[str]:
    return ["| setting | value |", "| --- | --- |"] + [
        f"| `{_cell(k)}` | `{_cell(json.dumps(v))}` |" for k, v in settings.items()]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a "|" ends a table cell even inside backticks


def _flat(d: dict, prefix: str) -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def _config(splits: dict, run: dict) -> str:
    lines = ["## Config hash", f"`{splits['config_hash']}`: the short sha256 of the settings that decide how clips "
             "are made (recorded in every clip's `meta.json` and audit row; where tasks ran, where assets were read "
             "from and how clips are packed are left out)."]
    if run.get("overrides"):
        lines.append("Overrides on the command line: " + ", ".join(f"`{o}`" for o in run["overrides"]) + ".")
    for change in run.get("config_changes") or []:  # a resume with other settings: the clips mix two configs
        lines.append(f"Resumed with changed settings at {change.get('at')} (config `{change.get('from')}` -> "
                     f"`{change.get('to')}`): " + "; ".join(f"`{c}`" for c in change.get("changed") or []) +
                     ". Clips made before keep their settings (`config_hash` in each clip's `meta.json`).")
    return "\n\n".join(lines) + "\n"


def _reproduce(splits: dict) -> str:
    fraction = splits.get("test_fraction")
    share = f"{fraction:.0%}" if isinstance(fraction, (int, float)) else "a share"
    return (f"## Reproducing the split\n\n"
            f"The split is per asset, so every clip of an asset is on one side: test = {share} of assets by a "
            f"stable hash of the uid, the same on every run and cluster size. It is "
            f"`curation.split.split_of(uid, test_fraction)` with `test_fraction = {fraction}`:\n\n"
            f"```python\nimport hashlib\n\n{inspect.getsource(split_module.split_of)}```\n\n"
            f"The lists themselves: `splits.json`, or `driveanymesh audit OUT uids --split test` (and `--split "
            f"train`, `--label textured|textureless`).\n")
