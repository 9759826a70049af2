"""ActionBench's metrics (train/actionbench.py) against cases worked out by hand, and `eval-points`
on a small ActionBench-layout folder."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from train.actionbench import (ACTIONMESH_PUBLISHED, align, chamfer_score, load_clip, motion_chamfer,
                               sample_free, sample_tracked, score_clip, score_sequences)

CLI = [sys.executable, "-m", "driveanymesh"]
R35 = Rotation.from_rotvec(np.deg2rad(35) * np.array([1.0, 2.0, 3.0]) / np.sqrt(14)).as_matrix()


def asymmetric_cloud(n: int, seed: int) -> np.ndarray:
    """(n, 3) points on an ellipsoid (axes 1, 0.6, 0.3) with a bump on one side: no symmetry."""
    x = np.random.default_rng(seed).normal(size=(n, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= [1.0, 0.6, 0.3]
    x[x[:, 0] > 0.6, 1] += 0.25
    return x


def bending(cloud: np.ndarray, frames: int) -> np.ndarray:
    """(frames, n, 3): the cloud bending a little more each frame (tracked points)."""
    return np.stack([cloud + [0, 0, 0.15 * t] * cloud[:, :1] ** 2 for t in range(frames)])


def test_a_rigidly_moved_or_uniformly_scaled_copy_scores_zero():
    gt = bending(asymmetric_cloud(1500, 0), 4)
    size = np.ptp(gt[0], axis=0).max()
    moved = gt @ R35.T + [0.4, -0.3, 0.7]
    res = score_sequences(gt, moved, icp_points=1000)
    assert res["cd_3d"] < 1e-6 * size and res["cd_4d"] < 1e-6 * size and res["cd_m"] < 1e-6 * size
    sim = align(moved[2], gt[2])
    assert np.allclose(sim.rotation, R35.T, atol=1e-9) and sim.scale == pytest.approx(1.0, abs=1e-9)
    # far from every start's neighbourhood of the identity: the 24 starts find it
    r150 = Rotation.from_rotvec(np.deg2rad(150) * np.array([1.0, -2.0, 0.5]) / np.sqrt(5.25)).as_matrix()
    assert score_sequences(gt, gt @ r150.T - [1.0, 0, 0.2], icp_points=1000)["cd_4d"] < 1e-6 * size
    scaled = 1.6 * moved
    assert score_sequences(gt, scaled, icp_points=1000)["cd_4d"] < 1e-6 * size
    # rigid only: the scale is left, so the copy does not align
    assert score_sequences(gt, scaled, icp_points=1000, scale=False)["cd_3d"] > 0.05 * size


def test_shuffled_frames_of_a_rotating_object_score_zero_per_frame_but_not_in_4d():
    cloud, T = asymmetric_cloud(1200, 1), 6
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    gt = np.stack([cloud @ Rotation.from_rotvec(np.deg2rad(25) * t * axis).as_matrix().T for t in range(T)])
    size = np.ptp(cloud, axis=0).max()
    in_order = score_sequences(gt, gt)
    assert max(in_order.values()) < 1e-6 * size
    order = [0, 3, 5, 1, 4, 2]                           # frame 0 in place, every other frame moved
    shuffled = gt[order]
    res = score_sequences(gt, shuffled)
    assert res["cd_3d"] < 1e-6 * size                    # each frame is a rotated copy of the cloud
    assert res["cd_4d"] > 0.1 * size and res["cd_m"] > 0.1 * size
    # CD-4D is frame 0's alignment (here the identity) applied to every frame, scored per frame
    first = align(shuffled[0], gt[0])
    expected = np.mean([chamfer_score(gt[k], first.apply(shuffled[k])) for k in range(T)])
    assert res["cd_4d"] == pytest.approx(expected, rel=1e-9)
    assert res["cd_m"] == pytest.approx(motion_chamfer(gt, first.apply(shuffled)), rel=1e-9)


def test_motion_chamfer_of_a_known_displacement():
    # Static GT G; pred = G at frame 0 and G + d at frames 1..T-1. Frame 0 matches every point to
    # itself both ways, so each point's distance over time is (0 + (T - 1)|d|) / T, in both
    # directions: CD-M = 2 |d| (T - 1) / T.
    T, d = 5, np.array([0.03, -0.04, 0.12])                       # |d| = 0.13
    G = asymmetric_cloud(800, 2)
    gt = np.repeat(G[None], T, axis=0)
    pred = np.concatenate([G[None], np.repeat((G + d)[None], T - 1, axis=0)])
    expected = 2 * 0.13 * (T - 1) / T                             # 0.208
    assert motion_chamfer(gt, pred) == pytest.approx(expected, rel=1e-12)
    res = score_sequences(gt, pred)                               # frame 0 aligns by the identity
    assert res["cd_m"] == pytest.approx(expected, rel=1e-9)
    assert res["cd_3d"] < 1e-9                                    # each frame's translation is undone


def test_chamfer_score_against_brute_force():
    # by hand: GT {0, e_x}, pred {0, e_x, 3 e_x}: GT -> pred 0; pred -> GT (0 + 0 + 2) / 3
    gt = np.array([[0.0, 0, 0], [1, 0, 0]])
    pred = np.array([[0.0, 0, 0], [1, 0, 0], [3, 0, 0]])
    assert chamfer_score(gt, pred) == pytest.approx(2 / 3)
    rng = np.random.default_rng(3)
    gt, pred = rng.normal(size=(300, 3)), rng.normal(size=(250, 3)) + [0.2, 0, 0]
    dist = np.linalg.norm(gt[:, None] - pred[None], axis=-1)       # (300, 250), every pair
    q_pred = np.random.RandomState(44).permutation(250)[:100]
    q_gt = np.random.RandomState(45).permutation(300)[:100]
    brute = dist[q_gt].min(1).mean() + dist[:, q_pred].min(0).mean()
    assert chamfer_score(gt, pred, queries=100) == pytest.approx(brute, rel=1e-12)
    assert chamfer_score(gt, pred, queries=10_000) == pytest.approx(dist.min(1).mean() + dist.min(0).mean(), rel=1e-12)


def on_surface(mesh, points: np.ndarray) -> np.ndarray:
    """Whether each point lies inside one of the mesh's triangles (in its plane, barycentrics >= 0)."""
    tri = np.asarray(mesh.triangles)                                   # (F, 3, 3)
    n = len(tri)
    bary = trimesh.triangles.points_to_barycentric(np.repeat(tri, len(points), axis=0), np.tile(points, (n, 1)))
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    plane = np.abs(np.einsum("fpx,fx->fp", points[None] - tri[:, None, 0], normal))
    return ((plane < 1e-9) & (bary.reshape(n, len(points), 3) >= -1e-9).all(-1)).any(0)


def test_tracked_points_move_with_the_mesh_and_free_points_do_not():
    mesh = trimesh.creation.icosphere(subdivisions=1)
    offsets = np.array([[0.0, 0, 0], [0.5, 0, 0], [0.1, -2.0, 0.3]])
    frames = [trimesh.Trimesh(mesh.vertices + o, mesh.faces, process=False) for o in offsets]
    frames.append(trimesh.Trimesh(mesh.vertices * [1.0, 2.0, 3.0], mesh.faces, process=False))
    pts = sample_tracked(frames, 500, seed=7)
    assert pts.shape == (4, 500, 3)
    for t, o in enumerate(offsets):
        assert np.allclose(pts[t] - pts[0], o, atol=1e-12)
    assert np.allclose(pts[3], pts[0] * [1.0, 2.0, 3.0], atol=1e-12)  # barycentric: linear in the vertices
    assert on_surface(frames[0], pts[0]).all()
    free = sample_free(frames, 500, seed=7)
    assert not np.allclose(free[1] - free[0], offsets[1])
    assert np.array_equal(free[1], trimesh.sample.sample_surface(frames[1], 500, seed=8)[0])
    # faces drawn by area: two triangles of areas 1/2 and 3/2
    two = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [8, 0, 0], [5, 1, 0]],
                          [[0, 1, 2], [3, 4, 5]], process=False)
    share = (sample_tracked([two], 8000, seed=1)[0][:, 0] >= 5).mean()
    assert share == pytest.approx(0.75, abs=0.02)
    with pytest.raises(ValueError, match="topology"):
        sample_tracked([frames[0], trimesh.creation.icosphere(subdivisions=2)], 10)


def _deforming_meshes(frames: int, wave: float) -> list:
    """An ellipsoid sheared out of symmetry, bending by `wave` a frame and drifting along x."""
    base = trimesh.creation.icosphere(subdivisions=2)
    out = []
    for t in range(frames):
        v = base.vertices * [1.0, 0.7, 0.4] + [0, 0.2, 0] * (base.vertices[:, :1] + 1) ** 2
        v = v + [0, 0, wave * t] * v[:, :1] ** 2 + [0.05 * t, 0, 0]
        out.append(trimesh.Trimesh(v, base.faces, process=False))
    return out


def test_eval_points_on_an_actionbench_folder(tmp_path):
    T = 4
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    truth = _deforming_meshes(T, 0.2)
    for uid, wave, frames in (("clip_a", 0.2, T + 1), ("clip_b", -0.2, T)):
        (gt_root / uid).mkdir(parents=True)
        pts = sample_tracked(truth, 800, seed=5)
        np.save(gt_root / uid / "surfaces.npy", np.concatenate([pts, np.zeros_like(pts)], axis=-1).astype(np.float32))
        (pred_root / uid).mkdir(parents=True)
        for t, m in enumerate(_deforming_meshes(frames, wave)):  # clip_a: right motion, one frame too many
            m.export(pred_root / uid / f"mesh_{t:02d}.glb")
    (gt_root / "clip_c").mkdir()                                  # GT without a prediction
    np.save(gt_root / "clip_c" / "surfaces.npy", np.zeros((T, 5, 6), np.float32))
    out = tmp_path / "res" / "per_clip.csv"
    counts = ["--icp-points", "500", "--chamfer-points", "2000", "--alignment", "similarity"]  # the folder's plumbing
    proc = subprocess.run(CLI + ["eval-points", str(pred_root), str(gt_root), "--out", str(out)] + counts,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    every = list(csv.DictReader(open(out)))
    assert list(every[0]) == ["uid", "kind", "cd_3d", "cd_4d", "cd_m"]
    rows = [r for r in every if r["kind"] == "prediction"]
    assert [r["uid"] for r in rows] == ["clip_a", "clip_b"]
    a, b = ({k: float(r[k]) for k in ("cd_3d", "cd_4d", "cd_m")} for r in rows)
    # the controls, from the GT itself: a prediction with the right motion beats both
    held = {(r["uid"], r["kind"]): {k: float(r[k]) for k in ("cd_3d", "cd_4d", "cd_m")} for r in every
            if r["kind"] != "prediction"}
    assert sorted(held) == [(u, k) for u in ("clip_a", "clip_b") for k in ("first_frame", "time_mean")]
    gt_a = np.load(gt_root / "clip_a" / "surfaces.npy")[..., :3]
    assert held["clip_a", "first_frame"]["cd_4d"] == pytest.approx(score_sequences(
        gt_a, np.repeat(gt_a[:1], T, axis=0), icp_points=500, alignment="similarity")["cd_4d"], rel=1e-6)
    assert held["clip_a", "first_frame"]["cd_m"] > 2 * a["cd_m"] and held["clip_a", "time_mean"]["cd_m"] > 2 * a["cd_m"]
    mean_ff = np.mean([held[u, "first_frame"]["cd_3d"] for u in ("clip_a", "clip_b")])
    assert f"Control: the GT's first frame held still:  CD-3D {mean_ff:.4f}" in proc.stdout
    for uid, r in zip(("clip_a", "clip_b"), (a, b)):
        assert f"{uid}  CD-3D {r['cd_3d']:.4f}  CD-4D {r['cd_4d']:.4f}  CD-M {r['cd_m']:.4f}" in proc.stdout
    mean = {k: (a[k] + b[k]) / 2 for k in a}
    assert f"mean over 2 clips:  CD-3D {mean['cd_3d']:.4f}  CD-4D {mean['cd_4d']:.4f}  CD-M {mean['cd_m']:.4f}" in proc.stdout
    assert "ActionMesh, published (theirs" in proc.stdout and f"CD-M {ACTIONMESH_PUBLISHED['cd_m']:.4f}" in proc.stdout
    assert "1 GT clips without a prediction" in proc.stderr
    # the right motion (sampling noise only) against the mirrored one, at the same shapes per frame
    assert a["cd_m"] < 0.5 * b["cd_m"] and a["cd_4d"] < b["cd_4d"]
    direct = score_clip(str(pred_root / "clip_a"), str(gt_root / "clip_a"), icp_points=500, chamfer_points=2000)
    assert direct == pytest.approx(a, rel=1e-6)                     # the 5th predicted frame dropped
    assert len(load_clip(str(pred_root / "clip_a"))) == T + 1

    one = subprocess.run(CLI + ["eval-points", str(pred_root / "clip_b"), str(gt_root / "clip_b" / "surfaces.npy")]
                         + counts, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    assert f"CD-3D {b['cd_3d']:.4f}  CD-4D {b['cd_4d']:.4f}  CD-M {b['cd_m']:.4f}" in one.stdout

    os.remove(pred_root / "clip_b" / "mesh_03.glb")                 # 3 predicted frames for 4 GT frames
    short = subprocess.run(CLI + ["eval-points", str(pred_root), str(gt_root)] + counts, capture_output=True, text=True)
    assert short.returncode == 2 and "clip_b (3 predicted and 4 GT frames, 4 needed)" in short.stderr


def test_actionbench_alignment_scales_each_axis_as_the_reference():
    """The reference's gradient ICP fits a scale per axis: a per-axis scaled copy scores as an exact
    copy (both resampled from one surface, so the floor is the sampling's), a rigidly moved and
    scaled copy too, while the closed-form similarity fit leaves the anisotropy in the score."""
    from train.actionbench import actionbench_start_rotations

    starts = actionbench_start_rotations()
    assert starts.shape == (24, 3, 3) and np.allclose(starts @ starts.transpose(0, 2, 1), np.eye(3), atol=1e-6)
    assert len(np.unique(np.round(starts, 4).reshape(24, -1), axis=0)) == 22   # the reference's own repeats
    gt = asymmetric_cloud(400, seed=1)[None]
    copy = asymmetric_cloud(400, seed=2)[None]

    def cd(pred, alignment):
        return score_sequences(gt, pred, icp_points=400, queries=400, alignment=alignment)["cd_3d"]

    exact = cd(copy, "actionbench")
    axis_scaled = copy * [0.833, 1.176, 1.0]
    moved = copy @ Rotation.from_rotvec([0.0, 0.0, 0.2]).as_matrix().T * 1.1 + [0.1, -0.05, 0.02]
    assert cd(axis_scaled, "actionbench") < 1.1 * exact
    assert cd(moved, "actionbench") < 1.1 * exact
    assert cd(axis_scaled, "similarity") > 1.15 * cd(copy, "similarity")
    with pytest.raises(ValueError, match="alignment must be one of"):
        cd(copy, "umeyama")


def test_the_cpu_stand_in_for_pytorch3d_matches_the_formulas_the_reference_relies_on(monkeypatch):
    """benchmarks/pytorch3d_cpu serves the reference's PyTorch3D imports in the agreement benchmark:
    its Euler starts are ours, its chamfer_distance the brute-force squared one, and its composed
    Scale / Rotate / Translate the reference's own `s * x @ R + T`."""
    import torch

    from train.actionbench import actionbench_start_rotations

    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks", "pytorch3d_cpu"))
    from pytorch3d.loss import chamfer_distance
    from pytorch3d.transforms import euler_angles_to_matrix, rotation_6d_to_matrix, transform3d

    deg = torch.pi / 180
    azim = torch.tensor([0] * 4 + [90] * 4 + [180] * 4 + [270] * 4 + [0] * 4 + [90] * 4, dtype=torch.float32) * deg
    elev = torch.tensor([0] * 16 + [90] * 2 + [-90] * 2 + [90] * 2 + [-90] * 2, dtype=torch.float32) * deg
    roll = torch.tensor([0, 90, 180, 270] * 4 + [0, 90] * 4, dtype=torch.float32) * deg
    starts = euler_angles_to_matrix(torch.stack((azim, elev, roll), -1), "XYZ")
    assert np.allclose(starts.numpy(), actionbench_start_rotations(), atol=1e-6)

    x = torch.as_tensor(asymmetric_cloud(300, seed=3), dtype=torch.float32)[None].repeat(2, 1, 1)
    y = torch.as_tensor(asymmetric_cloud(200, seed=4), dtype=torch.float32)[None].repeat(2, 1, 1) * 1.1
    d = torch.cdist(x, y).pow(2)
    loss, _ = chamfer_distance(x, y, batch_reduction=None)
    assert torch.allclose(loss, d.min(2).values.mean(1) + d.min(1).values.mean(1), rtol=1e-5)

    r = rotation_6d_to_matrix(torch.tensor([[1.0, 0.2, 0.0, 0.1, 1.0, 0.3]]))
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3)[None], atol=1e-6)
    s, t = torch.tensor([[0.8, 1.2, 1.0]]), torch.tensor([[0.1, -0.2, 0.3]])
    moved = transform3d.Scale(s).compose(transform3d.Rotate(r), transform3d.Translate(t)).transform_points(x[0])
    assert torch.allclose(moved, s * x[0] @ r[0] + t, atol=1e-6)
    both = transform3d.Scale(s).stack(transform3d.Translate(t)).transform_points(x)  # one transform per frame
    assert torch.allclose(both[0], x[0] * s) and torch.allclose(both[1], x[1] + t)


def test_the_gpu_path_of_the_actionbench_alignment_finds_the_same_transform():
    """On a GPU the gradient ICP's neighbours come from comparing every pair (no KD-tree there):
    run on the CPU, that path and the KD-tree's give one transform."""
    from train.actionbench import align_actionbench

    gt = asymmetric_cloud(300, seed=1)
    pred = asymmetric_cloud(300, seed=2) @ R35.T * [0.9, 1.1, 1.0] + [0.05, 0.0, -0.03]
    tree = align_actionbench(pred, gt, steps=60, device="cpu")
    every = align_actionbench(pred, gt, steps=60, device="cpu", exhaustive=True)
    assert np.allclose(tree.apply(pred), every.apply(pred), atol=1e-5)
