"""The jitter threshold keeps still vertices exactly still and moves the rest."""
import numpy as np

from train.refine import refine_trajectory


def test_small_moves_are_undone_and_large_ones_kept():
    rng = np.random.default_rng(0)
    T, V = 6, 100
    base = rng.uniform(-0.5, 0.5, (V, 3)).astype(np.float32)
    moving = np.arange(V) < 40
    traj = np.repeat(base[None], T, axis=0)
    traj[:, moving] += np.linspace(0, 0.3, T)[:, None, None] * np.array([1.0, 0, 0], dtype=np.float32)
    jitter = rng.normal(0, 1e-3, traj.shape).astype(np.float32)
    refined = refine_trajectory(traj + jitter, delta=0.01)
    # still vertices: every frame exactly the first (jittered) frame
    assert (refined[:, ~moving] == refined[0, ~moving]).all()
    # moving vertices: they follow the generated positions
    assert np.array_equal(refined[1:, moving], (traj + jitter)[1:, moving])
    # a slow drift (0.004 per frame) is held, then caught up once it reaches delta from the held
    # position: compared with the refined previous frame, a point never lags by delta or more
    drift = np.repeat(base[None], 8, axis=0) + np.linspace(0, 0.028, 8)[:, None, None] * np.array([1.0, 0, 0])
    held = refine_trajectory(drift, delta=0.01)
    assert (held[1] == held[0]).all() and not (held[-1] == held[0]).all()
    assert np.linalg.norm(held - drift, axis=-1).max() < 0.01
