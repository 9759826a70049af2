"""Clip filters and the textured label on rendered clips: each rule trips on the clip built to trip
it and passes on one that must pass. Thresholds are the defaults, which hold at these test settings
(32 px, 1 sample, 6 keyframes) as well as at the paper's 256 px / 30 keyframes."""
import copy
import json

import numpy as np
import pytest

from curation.filters import RULES, FilterSettings, run_filters
from curation.filters.atypical_motion import atypical_motion
from curation.filters.bounds import bounds
from curation.filters.degenerate import degenerate
from curation.filters.scene_like import scene_like
from curation.filters.ssim_motion import ssim_motion
from curation.filters.texture_label import texture_label
from curation.clip_processing import load_clip
from tests.conftest import tiny_job

pytestmark = pytest.mark.slow

SETTINGS = FilterSettings()
DEMO_JOB = dict(resolution=32, samples=1, keyframes=6)  # as tests/test_render_clips.py: renders are shared
LABEL_JOB = dict(resolution=16, samples=1, keyframes=2, engine="workbench")


@pytest.fixture(scope="module")
def demo_clip(demo_assets, render_cached):
    def get(name: str) -> dict:
        res = render_cached(demo_assets[name]["path"], tiny_job(**DEMO_JOB))
        assert res.ok and len(res.clips) >= 1, res
        return load_clip(res.clips[0]["dir"])
    return get


def test_bounds_rejects_runaway_and_keeps_spinner(demo_clip):
    out = bounds(demo_clip("runaway"), SETTINGS)
    assert not out.passed and out.values["bounds_max_abs"] > out.values["bounds_limit"] == 0.75 + SETTINGS.bounds_margin
    assert out.values["bounds_frames_outside"] >= 1 and "volume/2 + margin" in out.reason
    assert sum(out.values["bounds_border_alpha_pixels"]) > 0  # the renders agree: cut by the image border
    ok = bounds(demo_clip("rigid_spinner"), SETTINGS)
    assert ok.passed and ok.values["bounds_frames_outside"] == 0
    assert ok.values["bounds_border_alpha_pixels"] == [0, 0, 0, 0]


def test_ssim_motion_rejects_static_statue_and_keeps_moving_clips(demo_clip):
    out = ssim_motion(demo_clip("static_statue"), SETTINGS)
    assert not out.passed and out.values["ssim_change"] < SETTINGS.ssim_min_change
    assert out.values["mean_displacement_max"] < SETTINGS.min_mean_displacement
    assert len(out.values["ssim_min_per_view"]) == 4
    for name in ("blob_shapekeys", "rigid_spinner"):
        ok = ssim_motion(demo_clip(name), SETTINGS)
        assert ok.passed and ok.values["ssim_change"] > 2 * SETTINGS.ssim_min_change, (name, ok.values)


def test_ssim_reads_the_silhouette_not_colour_under_transparency(demo_clip):
    clip = demo_clip("rigid_spinner")
    noisy = dict(clip, frames=[f.copy() for f in clip["frames"]])
    rng = np.random.default_rng(0)
    for f in noisy["frames"]:  # colour under alpha 0 is not part of the image
        clear = f[..., 3] == 0
        f[clear, :3] = rng.integers(0, 256, size=(int(clear.sum()), 3), dtype=np.uint8)
    a, b = ssim_motion(clip, SETTINGS).values, ssim_motion(noisy, SETTINGS).values
    assert a["ssim_min_per_view"] == b["ssim_min_per_view"]
    # and the silhouette alone carries motion: the spinner turned into a flat grey shape still moves
    flat = dict(clip, frames=[np.dstack([np.full(f.shape[:2] + (3,), 200, np.uint8), f[..., 3]]) for f in clip["frames"]])
    assert ssim_motion(flat, SETTINGS).values["ssim_change"] > SETTINGS.ssim_min_change


def test_ssim_motion_also_rejects_images_that_change_over_still_geometry(demo_clip):
    moving = demo_clip("blob_shapekeys")
    still = dict(moving, verts=np.repeat(moving["verts"][:1], len(moving["verts"]), axis=0))
    out = ssim_motion(still, SETTINGS)
    assert out.values["ssim_change"] > SETTINGS.ssim_min_change and not out.passed
    assert "mean vertex displacement" in out.reason


def test_atypical_motion_rejects_a_teleport_and_keeps_real_motion(demo_clip):
    clip = demo_clip("creature_plain")
    ok = atypical_motion(clip, SETTINGS)
    assert ok.passed and 0 < ok.values["max_jump_per_frame"] < SETTINGS.max_jump
    # No demo asset teleports: make the real creature jump sideways at its widest keyframe gap, by
    # 1.5x the allowed step over that gap, the rest of its motion unchanged.
    kf = np.asarray(clip["meta"]["keyframes"], dtype=float)
    k = int(np.argmax(np.diff(kf))) + 1
    gap = kf[k] - kf[k - 1]
    assert gap > 1  # the step is per source frame: a fast move over a wide gap stays allowed
    fast = dict(clip, verts=clip["verts"].copy())
    fast["verts"][k:, :, 0] += 0.8 * SETTINGS.max_jump * gap
    assert atypical_motion(fast, SETTINGS).passed
    jumped = dict(clip, verts=clip["verts"].copy())
    jumped["verts"][k:, :, 0] += 1.5 * SETTINGS.max_jump * gap
    out = atypical_motion(jumped, SETTINGS)
    assert not out.passed and out.values["max_jump_keyframe"] == k
    assert out.values["jump_ratio_to_next"] > 3  # a lone spike
    broken = dict(clip, verts=clip["verts"].copy())
    broken["verts"][2, 5] = np.nan
    assert not atypical_motion(broken, SETTINGS).passed


def test_scene_like_rejects_the_spread_scene_and_keeps_a_many_part_robot(demo_clip, shared_asset, render_cached):
    out = scene_like(demo_clip("scene_spread"), SETTINGS)
    assert not out.passed and out.values["scene_components"] == 40
    assert out.values["scene_isolated"] >= SETTINGS.scene_min_isolated > out.values["scene_moving"]
    robot = render_cached(shared_asset("robot_expressive.glb"), tiny_job(**LABEL_JOB))
    ok = scene_like(load_clip(robot.clips[0]["dir"]), SETTINGS)
    # many parts (eyes, joints, plates), packed together into one body
    assert ok.passed and ok.values["scene_components"] >= SETTINGS.scene_min_components
    assert ok.values["scene_isolated"] < SETTINGS.scene_min_isolated
    # its triangles have their own vertices (flat shading): 63 parts once welded, ~2000 by index
    assert ok.values["scene_components"] < 100


def test_scene_like_tells_packed_pieces_from_spread_props():
    """Hand-made clips: 200 cubes packed into a block (a kitbashed body) against 200 cubes spread
    at random over a 60 x 60 plane; each moving (all together) or still (one moving)."""
    def cubes(centers, size):
        corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float) - 0.5
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        tri = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
        verts = (centers[:, None, :] + size * corners[None]).reshape(-1, 3)
        faces = (tri[None] + 8 * np.arange(len(centers))[:, None, None]).reshape(-1, 3)
        return verts, faces

    grid = np.stack(np.meshgrid(*[np.arange(n) for n in (5, 5, 8)], indexing="ij"), -1).reshape(-1, 3)
    packed, faces = cubes(grid * 0.1, 0.095)           # gaps of 0.005: pieces that touch
    spread, _ = cubes(np.c_[np.random.default_rng(0).uniform(0, 60, (200, 2)), np.zeros(200)], 0.5)

    def clip(first, move_all):
        T = 4
        verts = np.repeat(first[None], T, 0)
        shift = np.linspace(0, 0.3, T)[:, None] * (first.max() - first.min())
        if move_all:
            verts[..., 0] += shift
        else:
            verts[:, :8, 0] += shift  # one piece moves
        return {"verts": verts.astype(np.float32), "faces": faces}

    walker = scene_like(clip(packed, move_all=True), SETTINGS)
    assert walker.passed and walker.values["scene_components"] == 200 and walker.values["scene_isolated"] == 0.0
    assert scene_like(clip(packed, move_all=False), SETTINGS).passed  # packed: one body, moving or not
    props = scene_like(clip(spread, move_all=False), SETTINGS)
    assert not props.passed and props.values["scene_isolated"] > 0.8 and props.values["scene_moving"] < 0.01
    swarm = scene_like(clip(spread, move_all=True), SETTINGS)
    assert swarm.passed and swarm.values["scene_moving"] == 1.0  # everything moves: not a still set


def test_a_kitbashed_walker_is_a_character_and_props_on_a_ground_a_scene(demo_clip):
    walker = scene_like(demo_clip("kitbash_walker"), SETTINGS)  # 392 cubes, none over 0.09 of the whole
    assert walker.passed and walker.values["scene_components"] == 392
    assert walker.values["scene_largest_part"] < 0.25  # what alone called it a scene before
    assert walker.values["scene_isolated"] < SETTINGS.scene_min_isolated
    ground = scene_like(demo_clip("ground_scene"), SETTINGS)  # the ground is nearly the whole
    assert not ground.passed and ground.values["scene_largest_part"] > 0.9
    assert ground.values["scene_isolated"] >= SETTINGS.scene_min_isolated
    assert ground.values["scene_moving"] < SETTINGS.scene_max_moving and "props, not one character" in ground.reason


def test_scene_like_ignores_vertices_no_triangle_uses(demo_clip):
    clip = demo_clip("blob_shapekeys")
    far = np.full((len(clip["verts"]), 1, 3), 0.7, np.float32)  # an unreferenced vertex in a corner
    out = scene_like(dict(clip, verts=np.concatenate([clip["verts"], far], axis=1)), SETTINGS)
    assert out.values["scene_components"] == 1 and out.values["scene_largest_part"] == pytest.approx(1.0)


def test_degenerate_rejects_a_flattened_mesh_and_keeps_the_real_one(demo_clip):
    clip = demo_clip("blob_shapekeys")
    ok = degenerate(clip, SETTINGS)
    assert ok.passed and ok.values["boundary_edge_fraction"] == 0.0  # a closed icosphere
    line = dict(clip, verts=clip["verts"] * np.array([1.0, 1e-3, 1e-3], np.float32))
    out = degenerate(line, SETTINGS)
    assert not out.passed and "flat in two axes" in out.reason
    plane = dict(clip, verts=clip["verts"] * np.array([1.0, 1.0, 1e-3], np.float32))
    assert degenerate(plane, SETTINGS).passed  # one flat axis is a sheet, not a broken mesh
    assert not degenerate(dict(clip, faces=np.zeros((0, 3), np.int32)), SETTINGS).passed


def test_run_filters_runs_every_rule_and_the_first_failure_decides(demo_clip):
    status, rule, results, label = run_filters(demo_clip("scene_spread"), SETTINGS)
    assert [r.rule for r in results] == [r.__name__ for r in RULES]
    failed = [r.rule for r in results if not r.passed]
    # it is a scene and too little moves (6 of 40 small props spin): the earlier rule, scene_like, decides
    assert status == "rejected" and failed == ["scene_like", "ssim_motion"] and rule == "scene_like"
    status, rule, results, label = run_filters(demo_clip("rigid_spinner"), SETTINGS)
    assert (status, rule) == ("accepted", None) and label["textured"] is False
    values = {k: v for r in results for k, v in r.values.items()}
    assert len(values) == sum(len(r.values) for r in results)  # names never collide across rules
    json.dumps(values)  # the audit stores them as JSON


def test_texture_label_fox_textured_from_unbound_file_image(shared_asset, demo_assets, render_cached):
    def label_of(path):
        return texture_label(load_clip(render_cached(path, tiny_job(**LABEL_JOB)).clips[0]["dir"]), SETTINGS)

    fox = label_of(shared_asset("fox.glb"))
    assert fox["textured"] and fox["label_source"] == "file_image_unbound"
    assert fox["file_image_std"] > SETTINGS.textured_min_image_std and fox["meshes_with_uv"] >= 1
    robot = label_of(shared_asset("robot_expressive.glb"))
    assert not robot["textured"] and robot["label_source"] == "no_image"
    tex = label_of(demo_assets["creature_textured"]["path"])
    assert tex["textured"] and tex["label_source"] == "scene_bound_image"
    plain = label_of(demo_assets["creature_plain"]["path"])
    assert not plain["textured"] and plain["label_source"] == "no_image"


def test_texture_label_flat_image_or_no_uv_is_textureless(demo_assets, render_cached):
    clip = load_clip(render_cached(demo_assets["creature_textured"]["path"], tiny_job(**LABEL_JOB)).clips[0]["dir"])
    flat = copy.deepcopy(clip)
    ev = flat["meta"]["texture_evidence"]
    for im in [*ev["file"]["images"], *[i for m in ev["scene"]["materials"].values() for i in m["images"]]]:
        im["std_rgb"] = [0.01, 0.01, 0.01]  # one colour: an image, but no texture
    assert texture_label(flat, SETTINGS)["label_source"] == "flat_image"
    assert not texture_label(flat, SETTINGS)["textured"]
    unbound = copy.deepcopy(clip)
    ev = unbound["meta"]["texture_evidence"]
    for m in ev["scene"]["materials"].values():
        m["image_texture"] = False
    ev["file"]["n_materials_with_base_color_texture"] = 0
    assert texture_label(unbound, SETTINGS)["label_source"] == "file_image_unbound"
    ev["scene"]["meshes_with_uv"] = 0  # an image nothing can map onto the surface
    assert texture_label(unbound, SETTINGS) == {**texture_label(unbound, SETTINGS), "textured": False,
                                                "label_source": "image_without_uv"}
