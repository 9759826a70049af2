"""Scene-like assets (paper 3.2: "we exclude scene models"): many separate parts, none dominant.

Connected components of the welded first-keyframe mesh, each measured by its bounding-box diagonal
against the whole's. Measured: scene_spread_0 (40 props spread over a plane) 40 components, the
largest 0.027 of the whole; robot_expressive 63 components (eyes, joints, plates), the largest
0.65-0.73; rigid_spinner 3 components, largest 0.75; single-surface demo creatures 1 component.
An articulated character has a dominant body; a scene does not.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from curation.filters.settings import FilterSettings, RuleResult
from curation.filters.welding import welded_faces


def component_sizes(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Bounding-box diagonals of the connected components of the faces (welded), largest first."""
    if len(faces) == 0:
        return np.zeros(0)
    wf, weld = welded_faces(points, faces)
    n = int(weld.max()) + 1
    edges = np.concatenate([wf[:, [0, 1]], wf[:, [1, 2]]])
    graph = sparse.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    used = np.unique(wf)  # vertices no triangle uses are no part of any surface
    _, comp = np.unique(label[used], return_inverse=True)  # labels of used vertices only, 0..k-1
    comp = comp.ravel()
    pos = np.zeros((n, 3))
    pos[weld] = points
    pos = pos[used]
    k = int(comp.max()) + 1
    lo = np.full((k, 3), np.inf)
    hi = np.full((k, 3), -np.inf)
    np.minimum.at(lo, comp, pos)
    np.maximum.at(hi, comp, pos)
    return np.sort(np.linalg.norm(hi - lo, axis=1))[::-1]


def scene_like(clip: dict, settings: FilterSettings) -> RuleResult:
    points = clip["verts"][0].astype(np.float64)
    sizes = component_sizes(points, clip["faces"])
    surface = points[np.unique(clip["faces"])]  # the whole, as the parts, is what triangles use
    whole = float(np.linalg.norm(surface.max(0) - surface.min(0))) if len(surface) else 0.0
    largest = float(sizes[0] / whole) if len(sizes) and whole > 0 else 1.0
    values = {"scene_components": int(len(sizes)), "scene_largest_part": round(largest, 5),
              "scene_second_part": round(float(sizes[1] / whole), 5) if len(sizes) > 1 and whole > 0 else 0.0}
    if len(sizes) >= settings.scene_min_components and largest < settings.scene_max_part_size:
        return RuleResult("scene_like", False,
                          f"{len(sizes)} separate parts (>= {settings.scene_min_components}), the largest only "
                          f"{largest:.3f} of the whole (< {settings.scene_max_part_size})", values)
    return RuleResult("scene_like", True, "", values)
