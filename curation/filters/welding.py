"""Faces re-indexed onto coincident vertices: exporters split vertices at UV seams and hard edges,
which would cut one surface into many index-connected pieces and add false boundary edges."""
from __future__ import annotations

import numpy as np

WELD_GRID = 1e-6  # normalized units (the first keyframe's largest side is 1): far below any real feature


def welded_faces(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(faces over welded vertex ids, welded id of every original vertex)."""
    keys = np.round(np.asarray(points, dtype=np.float64) / WELD_GRID).astype(np.int64)
    _, weld = np.unique(keys, axis=0, return_inverse=True)
    weld = weld.ravel()
    return weld[faces], weld
