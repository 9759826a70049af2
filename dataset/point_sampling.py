"""P1: N points of the dense first keyframe, half by random sampling (local detail) and half by
farthest point sampling (global coverage), the mix of paper 3.3. The same rows of the subdivision
map then give those points at any keyframe."""
from __future__ import annotations

import numpy as np

FPS_POOL = 4  # FPS runs over a random pool of 4x the points it picks: O(pool x picks) per clip


def farthest_points(points: np.ndarray, k: int, start: int = 0) -> np.ndarray:
    """Indices of k farthest-point samples of points (P, 3), from `start`. Written out (O(P k)
    numpy) because the loader's workers must not need torch's or a compiled extension's FPS."""
    # One contiguous float32 array per axis and in-place updates: the loop runs k times, so its
    # per-iteration allocations, not the arithmetic, set the speed (4x faster than (P, 3) rows).
    x, y, z = (np.ascontiguousarray(points[:, i], dtype=np.float32) for i in range(3))
    chosen = np.empty(k, dtype=np.int64)
    nearest = np.full(len(points), np.inf, dtype=np.float32)
    d, tmp = np.empty_like(nearest), np.empty_like(nearest)
    current = start
    for i in range(k):
        chosen[i] = current
        np.subtract(x, x[current], out=d)
        np.multiply(d, d, out=d)
        np.subtract(y, y[current], out=tmp)
        d += tmp * tmp
        np.subtract(z, z[current], out=tmp)
        d += tmp * tmp
        np.minimum(nearest, d, out=nearest)
        current = int(nearest.argmax())
    return chosen


def sample_point_indices(dense_first: np.ndarray, n: int, fps_fraction: float,
                         rng: np.random.Generator) -> np.ndarray:
    """n indices into the dense points of the first keyframe (P, 3)."""
    P = len(dense_first)
    n_fps = int(round(n * fps_fraction))
    random_part = rng.choice(P, n - n_fps, replace=P < n - n_fps)
    if n_fps == 0:
        return random_part
    pool = rng.choice(P, min(P, FPS_POOL * n_fps), replace=False)
    if len(pool) < n_fps:  # a mesh with fewer dense points than picks: repeat some
        pool = rng.choice(P, n_fps, replace=True)
    fps_part = pool[farthest_points(dense_first[pool], n_fps, start=int(rng.integers(len(pool))))]
    return np.concatenate([random_part, fps_part])
