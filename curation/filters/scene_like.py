"""Scene-like assets (paper 3.2: "we exclude scene models"): props spread over a ground or a wide
area, most of them still, against characters, which may be built of hundreds of separate rigid
pieces (kitbashed robots, armour plates, skinned sub-meshes) that touch and move together.

Parts are the connected components of the welded first-keyframe mesh. Two measurements decide:
  isolated  the share of parts (the largest one, typically a ground or a body, left out) whose
            bounding box keeps a gap of more than ISOLATION_GAP of the smaller part's diagonal to
            every other part's, the largest aside: props stand apart, a character's pieces touch.
  moving    the share of parts whose vertices move more than MOVING of the whole's diagonal (mean
            over the part, largest over keyframes, from keyframe 0): a scene has a few moving props,
            a character's pieces move with it.
A clip is scene-like with at least `scene_min_components` parts, at least `scene_min_isolated` of
them isolated and under `scene_max_moving` of them moving. Measured (6 keyframes, 32 px): scene_spread
(40 props over a 40-unit plane, 6 spinning) isolated 1.0, moving 0.15; ground_scene (props resting
on a ground, one rolling) isolated 1.0, moving 0.03; kitbash_walker (392 separate cubes walking)
isolated 0.0, moving 0.89; robot_expressive 63 parts, isolated 0.05-0.1. The largest part's share of
the whole is recorded as before (`scene_largest_part`): alone it called both kitbashed characters
of the field (largest part 0.22 and 0.23) scenes.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from curation.filters.settings import FilterSettings, RuleResult
from curation.filters.welding import welded_faces

ISOLATION_GAP = 0.25  # of the smaller part's diagonal: pieces closer than this touch
MOVING = 0.01         # of the whole's diagonal: a part that moves less than this stands still
MAX_PAIRS = 4_000_000  # part pairs compared at once (memory), in chunks beyond


def part_labels(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per vertex, its part (connected component of the welded faces), -1 for a vertex no triangle uses."""
    labels = np.full(len(points), -1)
    if len(faces) == 0:
        return labels
    wf, weld = welded_faces(points, faces)
    n = int(weld.max()) + 1
    edges = np.concatenate([wf[:, [0, 1]], wf[:, [1, 2]]])
    graph = sparse.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    used = np.zeros(n, bool)
    used[np.unique(wf)] = True
    _, dense = np.unique(label[used], return_inverse=True)  # parts numbered 0..k-1
    part_of_welded = np.full(n, -1)
    part_of_welded[used] = dense.ravel()
    return part_of_welded[weld]


def _boxes(points: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full((k, 3), np.inf)
    hi = np.full((k, 3), -np.inf)
    ok = labels >= 0
    np.minimum.at(lo, labels[ok], points[ok])
    np.maximum.at(hi, labels[ok], points[ok])
    return lo, hi


def isolated_share(lo: np.ndarray, hi: np.ndarray, gap: float) -> float:
    """Share of parts, the largest left out, whose box gap to every other such part exceeds `gap`
    times the smaller box's diagonal."""
    size = np.linalg.norm(hi - lo, axis=1)
    keep = np.arange(len(lo)) != int(np.argmax(size))
    lo, hi, size = lo[keep], hi[keep], size[keep]
    n = len(lo)
    if n < 2:
        return 0.0
    near = np.zeros(n, bool)
    step = max(1, MAX_PAIRS // n)
    for a in range(0, n, step):  # gap between boxes: the largest per-axis separation, <= 0 if they overlap
        sep = np.maximum(lo[None, :, :] - hi[a:a + step, None, :], lo[a:a + step, None, :] - hi[None, :, :]).max(-1)
        sep[np.arange(len(sep)), np.arange(a, a + len(sep))] = np.inf  # not itself
        near[a:a + step] = (sep <= gap * np.minimum(size[a:a + step, None], size[None, :])).any(1)
    return float(1.0 - near.mean())


def moving_share(verts: np.ndarray, labels: np.ndarray, k: int, threshold: float) -> float:
    """Share of parts whose mean vertex displacement from keyframe 0 exceeds `threshold` at some keyframe."""
    ok = labels >= 0
    disp = np.linalg.norm(verts[:, ok] - verts[:1, ok], axis=-1)  # T x used vertices
    count = np.bincount(labels[ok], minlength=k)
    mean = np.stack([np.bincount(labels[ok], weights=d, minlength=k) for d in disp]) / np.maximum(count, 1)
    return float((mean.max(0) > threshold).mean())


def scene_like(clip: dict, settings: FilterSettings) -> RuleResult:
    verts = clip["verts"].astype(np.float64)
    points = verts[0]
    labels = part_labels(points, clip["faces"])
    k = int(labels.max()) + 1
    used = points[labels >= 0]
    whole = float(np.linalg.norm(used.max(0) - used.min(0))) if len(used) else 0.0
    values = {"scene_components": k, "scene_largest_part": 1.0, "scene_second_part": 0.0}
    if k and whole > 0:
        lo, hi = _boxes(points, labels, k)
        sizes = np.sort(np.linalg.norm(hi - lo, axis=1))[::-1] / whole
        values.update(scene_largest_part=round(float(sizes[0]), 5),
                      scene_second_part=round(float(sizes[1]), 5) if k > 1 else 0.0)
        if k >= settings.scene_min_components:  # only where it can decide: a quadratic look at the parts
            values.update(scene_isolated=round(isolated_share(lo, hi, ISOLATION_GAP), 5),
                          scene_moving=round(moving_share(verts, labels, k, MOVING * whole), 5))
    if (k >= settings.scene_min_components and values.get("scene_isolated", 0.0) >= settings.scene_min_isolated
            and values.get("scene_moving", 1.0) < settings.scene_max_moving):
        return RuleResult("scene_like", False,
                          f"{k} separate parts (>= {settings.scene_min_components}), {values['scene_isolated']:.2f} of "
                          f"them standing apart (>= {settings.scene_min_isolated}) and {values['scene_moving']:.2f} "
                          f"moving (< {settings.scene_max_moving}): props, not one character", values)
    return RuleResult("scene_like", True, "", values)
