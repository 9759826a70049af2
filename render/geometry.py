"""World-space vertex positions of the counted meshes, after armature, shape keys and modifiers (bpy).

Vertices come from the evaluated depsgraph mesh with foreach_get (no per-vertex Python), meshes
concatenated in the counted (name) order, so row i is the same vertex in every frame.
"""
from __future__ import annotations

import bpy
import numpy as np


class VertexCountChanged(Exception):
    """An evaluated mesh changed its vertex count between frames (e.g. a geometry-nodes effect)."""


def _evaluated_mesh(obj, depsgraph):
    ev = obj.evaluated_get(depsgraph)
    return ev, ev.to_mesh()


def world_vertices(objects, expected_counts: list[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """(V x 3 float64 world positions, per-object vertex counts) at the current frame."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    chunks, counts = [], []
    for i, obj in enumerate(objects):
        ev, me = _evaluated_mesh(obj, depsgraph)
        n = len(me.vertices)
        if expected_counts is not None and n != expected_counts[i]:
            ev.to_mesh_clear()
            raise VertexCountChanged(f"mesh {obj.name!r}: {expected_counts[i]} -> {n} vertices")
        co = np.empty(n * 3, dtype=np.float64)
        me.vertices.foreach_get("co", co)
        M = np.array(ev.matrix_world, dtype=np.float64)
        chunks.append(co.reshape(n, 3) @ M[:3, :3].T + M[:3, 3])
        counts.append(n)
        ev.to_mesh_clear()
    if not chunks:
        return np.zeros((0, 3)), counts
    return np.concatenate(chunks), counts


def triangles(objects) -> np.ndarray:
    """F x 3 int32 triangle indices into the concatenated vertex array (current frame's topology)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    tris, base = [], 0
    for obj in objects:
        ev, me = _evaluated_mesh(obj, depsgraph)
        me.calc_loop_triangles()
        t = np.empty(len(me.loop_triangles) * 3, dtype=np.int32)
        me.loop_triangles.foreach_get("vertices", t)
        tris.append(t.reshape(-1, 3) + base)
        base += len(me.vertices)
        ev.to_mesh_clear()
    return np.concatenate(tris).astype(np.int32) if tris else np.zeros((0, 3), np.int32)
