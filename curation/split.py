"""Train/test split by a stable hash of the asset uid: the same on every run and cluster size, and
all clips of one asset on one side (no asset leaks across splits)."""
from __future__ import annotations

import hashlib


def split_of(uid: str, test_fraction: float) -> str:
    h = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")
    return "test" if h / 2.0 ** 64 < test_fraction else "train"
