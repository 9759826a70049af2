"""Dense trajectories: contract property (b) on rendered clips, and the subdivision's own structure."""
import numpy as np
import pytest
from scipy import sparse

from dataset.subdivision import dense_points, subdivision_map
from curation.clip_processing import load_clip
from tests.conftest import tiny_job


def undo_one_split(dense_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(parent faces, the midpoint ids of their edges ab, bc, ca), read back from children 4i..4i+3
    (a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca); asserts that the children are a 1-to-4 split."""
    ch = dense_faces.reshape(-1, 4, 3)
    a, b, c = ch[:, 0, 0], ch[:, 1, 1], ch[:, 2, 2]
    ab, bc, ca = ch[:, 0, 1], ch[:, 1, 2], ch[:, 2, 0]
    assert (ch[:, 0, 2] == ca).all() and (ch[:, 1, 0] == ab).all() and (ch[:, 2, 1] == bc).all()
    assert (ch[:, 3] == np.stack([ab, bc, ca], 1)).all()
    return np.stack([a, b, c], 1), np.stack([ab, bc, ca], 1)


def check_dense_trajectories(verts: np.ndarray, faces: np.ndarray, min_points: int = 50_000) -> None:
    V = verts.shape[1]
    S, dense_faces = subdivision_map(faces, V, min_points)
    points = dense_points(verts, S)
    N = S.shape[0]
    assert N >= min_points and points.shape == (len(verts), N, 3) and points.dtype == np.float32
    assert dense_faces.dtype == np.int32 and dense_faces.min() >= 0 and dense_faces.max() < N

    # (b): the points are the map applied to each frame's own vertices (float64 reference)
    for t in range(len(verts)):
        np.testing.assert_allclose(points[t], S.astype(np.float64) @ verts[t].astype(np.float64), atol=1e-6)
    # identity rows: every vertex, referenced by a face or not, is itself in every frame
    assert (S[:V] != sparse.identity(V, format="csr")).nnz == 0
    assert np.array_equal(points[:, :V], verts.astype(np.float32))

    # Undo the splits level by level down to the input faces: each level is a valid 1-to-4 split, and
    # every new point is, in every frame, the midpoint of its parent edge in that same frame.
    level, midpoints_seen = dense_faces.astype(np.int64), 0
    while len(level) > len(faces):
        parents, mids = undo_one_split(level)
        for k, (i, j) in enumerate(((0, 1), (1, 2), (2, 0))):
            expect = 0.5 * (points[:, parents[:, i]] + points[:, parents[:, j]])
            np.testing.assert_allclose(points[:, mids[:, k]], expect, atol=2e-6)
        midpoints_seen = max(midpoints_seen, int(mids.max()) + 1)
        level = parents
    assert np.array_equal(level, faces) and midpoints_seen == N


@pytest.mark.slow
def test_robot_dense_trajectories_follow_every_frame(shared_asset, render_cached):
    # robot_expressive: 19 meshes, 7214 vertices of which 4 no face uses (they stay identity rows)
    res = render_cached(shared_asset("robot_expressive.glb"),
                        tiny_job(resolution=16, samples=1, keyframes=2, engine="workbench"))
    clip = load_clip(res.clips[0]["dir"])
    verts, faces = clip["verts"], clip["faces"]
    assert np.setdiff1d(np.arange(verts.shape[1]), faces).size > 0  # the case is really there
    check_dense_trajectories(verts, faces)


@pytest.mark.slow
def test_shape_key_blob_dense_trajectories(demo_assets, render_cached):
    res = render_cached(demo_assets["blob_shapekeys"]["path"], tiny_job(resolution=32, samples=1, keyframes=6))
    clip = load_clip(res.clips[0]["dir"])
    assert np.abs(clip["verts"] - clip["verts"][0]).max() > 1e-3  # the frames differ: (b) is not trivial
    check_dense_trajectories(clip["verts"], clip["faces"])


@pytest.mark.slow
def test_fox_split_triangles_subdivide_to_50k(shared_asset, render_cached):
    # fox.glb: every triangle has its own 3 vertices (V=1728, F=576), so no edge is shared
    res = render_cached(shared_asset("fox.glb"), tiny_job(resolution=16, samples=1, keyframes=2, engine="workbench"))
    clip = load_clip(res.clips[0]["dir"])
    check_dense_trajectories(clip["verts"], clip["faces"])


def test_one_split_of_a_tetrahedron_shares_edge_midpoints():
    faces = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    verts = np.random.default_rng(0).normal(size=(3, 4, 3)).astype(np.float32)
    S, dense_faces = subdivision_map(faces, 4, min_points=5)
    assert S.shape == (4 + 6, 4) and len(dense_faces) == 16  # 6 shared edges -> 6 midpoints, not 12
    check_dense_trajectories(verts, faces, min_points=5)


def test_large_mesh_keeps_identity_map_and_faces():
    faces = np.array([[0, 1, 2], [2, 1, 3]])
    S, dense_faces = subdivision_map(faces, 6, min_points=6)
    assert S.shape == (6, 6) and (S != sparse.identity(6, format="csr")).nnz == 0
    assert np.array_equal(dense_faces, faces)


def test_degenerate_inputs():
    # no faces: nothing to subdivide, the map is the identity over every vertex
    S, dense_faces = subdivision_map(np.zeros((0, 3), np.int32), 5)
    assert S.shape == (5, 5) and dense_faces.shape == (0, 3)
    # a collapsed triangle (a, a, b): its zero-length edge's midpoint is the vertex itself
    S, dense_faces = subdivision_map(np.array([[0, 0, 1]]), 2, min_points=3)
    np.testing.assert_array_equal(S.toarray()[2:], [[1.0, 0.0], [0.5, 0.5]])  # edges (0, 0) and (0, 1)
    assert np.array_equal(dense_faces, [[0, 2, 3], [2, 0, 3], [3, 3, 1], [2, 3, 3]])
    with pytest.raises(ValueError, match="index vertices"):
        subdivision_map(np.array([[0, 1, 5]]), 3)
    with pytest.raises(ValueError, match="F x 3"):
        subdivision_map(np.array([0, 1, 2]), 3)
    with pytest.raises(ValueError, match="vertices per frame"):
        dense_points(np.zeros((2, 4, 3), np.float32), subdivision_map(np.array([[0, 1, 2]]), 3, 4)[0])
