"""What every asset source is to the pipeline: a `Source` selects the assets to process (with an audit
row for each candidate its own rules drop), fetches one asset inside its render task, and releases
it once the asset is done. The driver, the command line and the dataset card reach a source only
through these methods and attributes (`curation.sources.get(kind)`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dataset.storage import Store, fetch_to, is_url

if TYPE_CHECKING:  # the config imports the sources for their settings: only a type here
    from curation.pipeline_config import Pipeline


@dataclass
class AssetTask:
    uid: str
    source: str                     # the source's kind
    path: str | None = None         # a file or URL the task reads; None: the source fetches it (`fetch`)
    license: str | None = None      # the source's licence code, carried into every clip of the asset
    info: dict = field(default_factory=dict)  # attribution (name, author, viewerUrl) and what fetch needs
    overrides: dict = field(default_factory=dict)  # key or uid -> a person's decision (curation/overrides.py)


class Source:
    """One kind of source. Subclasses set `kind` and override what differs from a folder of files."""

    kind: str = ""
    # The dataclass of the source's own `source.<section>` settings, or None; `section` its key.
    settings: type | None = None
    section: str = ""
    # Settings (dotted, under `source.`) that do not change what a clip is: left out of the config
    # hash, so a run may resume or grow with them changed (where files are, how many are taken).
    hash_excludes: tuple[str, ...] = ()
    # Whether the source's section enters the config hash when another source is used. New sources:
    # False. Objaverse: True, as every output hashed before sources were plugins included it.
    hashed_when_inactive: bool = False
    # The key (under `source.`) that `run --uids FILE` sets, or "" when the source takes no uid list.
    uids_setting: str = ""
    card_tags: tuple[str, ...] = ()  # hub tags the dataset card adds for this source

    def validate(self, pipe: Pipeline) -> None:
        """Raise ValueError naming the key when the pipeline's source settings cannot work."""

    def select(self, pipe: Pipeline, out: Store) -> tuple[list[AssetTask], list[dict]]:
        """The assets to process, in the source's order, and the metadata-stage audit rows of the
        candidates the source's rules dropped."""
        raise NotImplementedError

    def fetch(self, task: AssetTask, pipe: Pipeline, work: str) -> str:
        """Inside the task: a local path of the asset file. A URL is copied into `work` (node-local
        scratch, removed after the asset). Raises when the asset cannot be had: the driver records it
        as the asset's `download_failed`."""
        if is_url(task.path):
            os.makedirs(os.path.join(work, "input"), exist_ok=True)
            return fetch_to(task.path, os.path.join(work, "input"))
        return task.path

    def release(self, task: AssetTask, pipe: Pipeline, path: str) -> None:
        """Inside the task, once the asset is done (whatever happened): free what `fetch` took."""

    def card_rules(self, source: dict) -> tuple[str, dict] | None:
        """From a run.json's `source` section: (a heading, {setting: value}) of the rules the source
        applied before download, for the dataset card; None when it applies none."""
        return None


def seeded_order(uids, seed: int, limit: int = 0) -> list[str]:
    """The uids sorted, permuted by numpy.random.default_rng(seed), cut to `limit` (0: all): a smaller
    limit is a prefix of a larger one with the same seed. Every source that selects by metadata uses it."""
    import numpy as np

    ordered = sorted(uids)
    picked = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    return picked[:limit] if limit else picked
