"""Rendered clips of the demo and shared assets: motion, keyframes, animations, texture evidence."""
import os

import numpy as np
import pytest

from curation.clip_processing import load_clip
from tests.blender_reimport import reimport
from tests.conftest import tiny_job

pytestmark = pytest.mark.slow


def rigid_fit(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Rotation R (Kabsch) with b - mean(b) ~= (a - mean(a)) R^T, and the largest residual."""
    ac, bc = a - a.mean(0), b - b.mean(0)
    U, _, Vt = np.linalg.svd(ac.T @ bc)
    D = np.diag([1, 1, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return R, float(np.abs(ac @ R.T - bc).max())


def test_rigid_spinner_vertices_follow_its_known_rotation(demo_assets, render_cached):
    info = demo_assets["rigid_spinner"]
    res = render_cached(info["path"], tiny_job(resolution=32, samples=1, keyframes=6))
    assert res.ok and len(res.clips) == 1
    clip = load_clip(res.clips[0]["dir"])
    frames, verts = np.array(clip["meta"]["keyframes"]), clip["verts"].astype(np.float64)
    for t in range(1, len(frames)):
        R, residual = rigid_fit(verts[0], verts[t])
        assert residual < 1e-4  # rigid: shape unchanged, only rotated
        assert np.allclose(R[2], [0, 0, 1], atol=1e-5)  # about the up axis
        angle = np.degrees(np.arctan2(R[1, 0], R[0, 0]))
        expected = info["degrees_per_frame"] * (frames[t] - frames[0])
        assert angle == pytest.approx(expected, abs=0.05), (t, frames[t])


def test_shape_key_and_armature_motion_is_exported(demo_assets, render_cached):
    for name in ("blob_shapekeys", "creature_plain"):
        res = render_cached(demo_assets[name]["path"], tiny_job(resolution=32, samples=1, keyframes=6))
        verts = load_clip(res.clips[0]["dir"])["verts"]
        moved = np.linalg.norm(verts - verts[0], axis=-1).max(axis=1)
        assert moved[0] == 0 and (moved[1:] > 1e-3).all(), (name, moved)


def test_normalization_puts_first_keyframe_in_unit_cube_and_keeps_later_motion(demo_assets, render_cached):
    res = render_cached(demo_assets["runaway"]["path"], tiny_job(resolution=32, samples=1, keyframes=30))
    clip = load_clip(res.clips[0]["dir"])
    v = clip["verts"]
    lo, hi = v[0].min(0), v[0].max(0)
    assert np.isclose((hi - lo).max(), 1.0, atol=1e-5) and np.allclose((hi + lo) / 2, 0, atol=1e-5)
    assert np.abs(v[-1]).max() > 0.75  # leaves the 1.5-unit volume: visible to the bounds filter
    norm = clip["meta"]["normalization"]
    # verts / scale + offset are the world-space vertices Blender evaluates at those keyframes
    world = np.asarray(reimport(demo_assets["runaway"]["path"], clip["meta"]["keyframes"])["frames"])
    back = v.astype(np.float64) / norm["scale"] + np.asarray(norm["offset"])
    assert back.shape == world.shape and np.allclose(back, world, atol=1e-5 / norm["scale"])


def test_keyframe_count_and_spacing_long_and_short_clips(shared_asset, demo_assets, render_cached):
    job = tiny_job(resolution=16, samples=1, keyframes=30, engine="workbench")
    fox = render_cached(shared_asset("fox.glb"), job)
    meta = load_clip(fox.clips[0]["dir"])["meta"]
    kf = np.array(meta["keyframes"])
    assert len(kf) == 30 and not meta["subframes"] and (kf == np.round(kf)).all()
    assert 1 <= np.diff(kf).min() and np.diff(kf).max() <= 3
    assert meta["frame_range"][0] <= kf[0] and kf[-1] <= meta["frame_range"][1]
    assert len(os.listdir(fox.clips[0]["dir"])) == 30 + 4  # frames + meta, cameras, verts, faces

    job50 = tiny_job(resolution=16, samples=1, keyframes=50, engine="workbench")
    short = render_cached(demo_assets["creature_plain"]["path"], job50)  # 48 frames < 50 keyframes
    clip = load_clip(short.clips[0]["dir"])
    kf = np.array(clip["meta"]["keyframes"])
    assert clip["meta"]["subframes"] and len(kf) == 50 and clip["verts"].shape[0] == 50
    assert kf[0] == 1 and kf[-1] == 48 and np.allclose(np.diff(kf), 47 / 49, atol=1e-3)
    # sub-frames are evaluated, not rounded: consecutive keyframes give distinct poses
    assert (np.abs(np.diff(clip["verts"], axis=0)).max(axis=(1, 2)) > 0).all()

    blip = render_cached(demo_assets["too_short"]["path"], job)  # 5 frames < min_source_frames
    assert blip.ok and blip.clips == []
    assert [s["reason"] for s in blip.skipped] == ["too_short"]
    assert "min_source_frames" in blip.skipped[0]["detail"]


def test_robot_gives_one_clip_per_animation_each_with_its_own_motion(shared_asset, render_cached):
    res = render_cached(shared_asset("robot_expressive.glb"), tiny_job(resolution=24, samples=1, keyframes=3))
    assert res.ok and res.skipped == []
    names = [c["animation"] for c in res.clips]
    assert sorted(names) == sorted(["Dance", "Death", "Idle", "Jump", "No", "Punch", "Running", "Sitting",
                                    "Standing", "ThumbsUp", "Walking", "WalkJump", "Wave", "Yes"])
    assert "Icosphere" not in res.asset_info["meshes"]  # the importer's hidden bone-shape helper
    clips = [load_clip(c["dir"]) for c in res.clips]
    n_verts = {c["verts"].shape[1] for c in clips}
    assert len(n_verts) == 1
    # every clip moves, and no two clips carry the same motion
    motion = [c["verts"] - c["verts"][0] for c in clips]
    for m in motion:
        assert np.abs(m).max() > 1e-3
    raw = [c["verts"] / c["meta"]["normalization"]["scale"] + c["meta"]["normalization"]["offset"] for c in clips]
    for i in range(len(raw)):
        for j in range(i + 1, len(raw)):
            assert not np.allclose(raw[i], raw[j], atol=1e-4), (names[i], names[j])


def test_texture_evidence_fox_textured_robot_textureless(shared_asset, demo_assets, render_cached):
    job = tiny_job(resolution=16, samples=1, keyframes=2, engine="workbench")
    fox = render_cached(shared_asset("fox.glb"), job).asset_info["texture_evidence"]
    robot = render_cached(shared_asset("robot_expressive.glb"), job).asset_info["texture_evidence"]
    # fox: the file embeds a colour texture and the mesh has UVs (its material leaves it unbound)
    assert fox["file"]["n_images"] == 1 and fox["scene"]["meshes_with_uv"] == 1
    assert max(fox["file"]["images"][0]["std_rgb"]) > 0.1
    # robot: flat materials, no image anywhere
    assert robot["file"]["n_images"] == 0 and robot["scene"]["n_textured_materials"] == 0
    tex = render_cached(demo_assets["creature_textured"]["path"], job).asset_info["texture_evidence"]
    plain = render_cached(demo_assets["creature_plain"]["path"], job).asset_info["texture_evidence"]
    assert tex["scene"]["n_textured_materials"] == 1 and tex["scene"]["textured_face_fraction"] == 1.0
    assert plain["scene"]["n_textured_materials"] == 0 and plain["file"]["n_images"] == 0
