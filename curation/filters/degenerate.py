"""Broken geometry (paper 3.2: "geometrically anomalous objects"): no triangles, or a keyframe whose
bounding box is flat in two axes (a line or a point: nothing a surface model can learn).

Measured: the thinnest accepted clip (multi_anim_1, a snake) keeps a second-largest side of 0.16;
scene_spread_0 is flat in one axis only (0.013 x 0.985 x 1) and is left to scene_like. The share of
boundary edges (welded) is recorded as open-scan evidence but does not decide: closed demo meshes
0, the monkey statue 0.029 (open eyes), the robot 0.047 (open joints); a scan fragment's boundary
grows like the square root of its size, so no single share separates scans from such assets.
"""
from __future__ import annotations

import numpy as np

from curation.filters.settings import FilterSettings, RuleResult
from curation.filters.welding import welded_faces


def boundary_edge_fraction(points: np.ndarray, faces: np.ndarray) -> float:
    """Share of the welded mesh's undirected edges that only one triangle uses."""
    if len(faces) == 0:
        return 0.0
    wf, _ = welded_faces(points, faces)
    e = np.sort(np.concatenate([wf[:, [0, 1]], wf[:, [1, 2]], wf[:, [2, 0]]]), axis=1)
    e = e[e[:, 0] != e[:, 1]]  # collapsed triangles' zero-length edges are not edges
    if len(e) == 0:
        return 0.0
    _, count = np.unique(e[:, 0] * (int(wf.max()) + 1) + e[:, 1], return_counts=True)
    return float((count == 1).sum() / len(count))


def degenerate(clip: dict, settings: FilterSettings) -> RuleResult:
    verts, faces = clip["verts"].astype(np.float64), clip["faces"]
    ext = np.sort(verts.max(axis=1) - verts.min(axis=1), axis=1) if verts.shape[1] else np.zeros((len(verts), 3))
    second = ext[:, 1]  # per keyframe, the middle side of the bounding box
    values = {"n_vertices": int(verts.shape[1]), "n_faces": int(len(faces)),
              "extent_first": [round(float(v), 5) for v in ext[0]] if len(ext) else [],
              "min_second_extent": round(float(second.min()), 5) if len(second) else 0.0,
              "boundary_edge_fraction": round(boundary_edge_fraction(verts[0], faces), 5) if len(verts) else 0.0}
    if len(faces) == 0:
        return RuleResult("degenerate", False, "no triangles", values)
    if not second.min() >= settings.degenerate_min_extent:
        t = int(np.argmin(second))
        return RuleResult("degenerate", False,
                          f"keyframe {t} is flat in two axes: bounding box {np.round(ext[t], 4).tolist()} "
                          f"(second side < {settings.degenerate_min_extent})", values)
    return RuleResult("degenerate", True, "", values)
