"""The jitter threshold of paper 3.5: a generated point whose move from its position in the previous
(refined) frame is shorter than delta is put back there, so still parts stay exactly still."""
from __future__ import annotations

import numpy as np


def refine_trajectory(points: np.ndarray, delta: float) -> np.ndarray:
    """points (T, V, 3) -> refined (T, V, 3); frame 0 is kept as given."""
    out = np.array(points, dtype=np.float32, copy=True)
    for t in range(1, len(out)):
        still = np.linalg.norm(out[t] - out[t - 1], axis=-1) < delta
        out[t][still] = out[t - 1][still]
    return out
