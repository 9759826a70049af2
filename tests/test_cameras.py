import numpy as np

from render.cameras import blender_camera_matrix, orbit_views, project


def test_four_orthogonal_views_see_the_whole_volume():
    views = orbit_views(4, 256, 40.0, 0.0, 1.5)
    assert [round(v["azimuth_deg"]) for v in views] == [0, 90, 180, 270]
    corners = np.array([[x, y, z] for x in (-.75, .75) for y in (-.75, .75) for z in (-.75, .75)])
    for v in views:
        R = v["w2c"][:3, :3]
        assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1.0)
        uv, z = project(corners, v["K"], v["w2c"])
        assert (z > 0).all() and (uv >= -0.5 - 1e-6).all() and (uv <= 255.5 + 1e-6).all()
    # the front view looks along +Y (Blender), the origin projects to the principal point
    assert np.allclose(views[0]["w2c"][2, :3], [0, 1, 0])
    uv, _ = project(np.zeros((1, 3)), views[0]["K"], views[0]["w2c"])
    assert np.allclose(uv, 127.5)
    # world up (+Z) maps to image up (-v)
    uv_up, _ = project(np.array([[0, 0, 0.5]]), views[0]["K"], views[0]["w2c"])
    assert uv_up[0, 1] < 127.5


def test_blender_camera_sees_unnormalized_scene_like_opencv_camera_sees_normalized():
    rng = np.random.default_rng(0)
    v = orbit_views(4, 64, 40.0, 20.0, 1.5)[1]
    offset, scale = np.array([3.0, -1.0, 2.0]), 0.25
    M = blender_camera_matrix(v["w2c"], offset, scale)
    world = rng.normal(size=(10, 3)) * 2 + offset
    cam_bl = (world - M[:3, 3]) @ M[:3, :3]      # Blender camera frame: x right, y up, -z forward
    cv = project((world - offset) * scale, v["K"], v["w2c"])[0]
    f = v["K"][0, 0]
    u = f * cam_bl[:, 0] / -cam_bl[:, 2] + 31.5
    vv = -f * cam_bl[:, 1] / -cam_bl[:, 2] + 31.5
    assert np.allclose(np.stack([u, vv], 1), cv, atol=1e-9)
