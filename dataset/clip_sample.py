"""One clip sample as read from a shard (the contract in docs/ARCHITECTURE.md), decoded lazily:
metadata and arrays on demand, and only the keyframe images a training sample uses."""
from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image


class ClipSample:
    def __init__(self, sample: dict):
        self.key = sample["__key__"]
        self._raw = sample
        self.meta = json.loads(sample["meta.json"])
        self.cameras = json.loads(sample["cameras.json"])
        self.verts = np.load(io.BytesIO(sample["verts.npy"])).astype(np.float32)   # (T, V, 3)
        self.faces = np.load(io.BytesIO(sample["faces.npy"]))                        # (F, 3)

    @property
    def num_frames(self) -> int:
        return self.verts.shape[0]

    def frame(self, t: int) -> np.ndarray:
        """Keyframe t's views, (views, H, W, 4) uint8 RGBA: the 4W x H strip split in view order."""
        strip = np.asarray(Image.open(io.BytesIO(self._raw[f"frame{t:02d}.png"])).convert("RGBA"))
        return np.stack(np.split(strip, len(self.cameras["views"]), axis=1))
