"""The orbit of orthogonal cameras around the normalized scene volume (pure numpy, no bpy).

Normalized space is Blender's world (Z up) after `(p - offset) * scale`, where the first keyframe's
bounding box fills the unit cube. View i sits at azimuth i*360/views (0 = the asset's front, -Y in
Blender, which is glTF's +Z), at the configured elevation, looking at the origin.

Exported in the OpenCV convention (x right, y down, z forward; pixel (u, v) = K (R p + t) / z with
integer pixel centers, so the principal point of a W-wide image is (W-1)/2).
"""
from __future__ import annotations

import math

import numpy as np

WORLD_UP = np.array([0.0, 0.0, 1.0])


def camera_distance(volume_size: float, fov_deg: float, elevation_deg: float) -> float:
    """Closest distance at which the whole cube of side `volume_size` stays in view."""
    h = volume_size / 2.0
    half = math.radians(fov_deg) / 2.0
    if abs(elevation_deg) < 1e-6:  # looking straight at a face: its near face is the widest part
        return h * (1.0 + 1.0 / math.tan(half))
    return h * math.sqrt(3.0) / math.sin(half)  # any direction: the cube's bounding sphere


def orbit_views(views: int, resolution: int, fov_deg: float, elevation_deg: float,
                volume_size: float) -> list[dict]:
    """Per view: name, azimuth, K (3x3), w2c (4x4, OpenCV) and the camera center, normalized space."""
    if abs(elevation_deg) >= 89.0:
        raise ValueError("elevation_deg must be within (-89, 89): the up vector is undefined at the poles")
    d = camera_distance(volume_size, fov_deg, elevation_deg)
    f = (resolution / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    c = (resolution - 1) / 2.0
    K = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
    e = math.radians(elevation_deg)
    out = []
    for i in range(views):
        a = 2.0 * math.pi * i / views
        center = d * np.array([math.cos(e) * math.sin(a), -math.cos(e) * math.cos(a), math.sin(e)])
        forward = -center / np.linalg.norm(center)
        right = np.cross(forward, WORLD_UP)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        R_c2w = np.stack([right, down, forward], axis=1)
        w2c = np.eye(4)
        w2c[:3, :3] = R_c2w.T
        w2c[:3, 3] = -R_c2w.T @ center
        out.append({"name": f"view{i}", "azimuth_deg": math.degrees(a), "K": K.copy(),
                    "w2c": w2c, "center": center})
    return out


def blender_camera_matrix(w2c: np.ndarray, offset: np.ndarray, scale: float) -> np.ndarray:
    """World matrix of a Blender camera (x right, y up, looking down -z) that sees the
    un-normalized scene exactly as the OpenCV camera `w2c` sees the normalized one."""
    R_c2w = w2c[:3, :3].T
    center_norm = -R_c2w @ w2c[:3, 3]
    M = np.eye(4)
    M[:3, :3] = R_c2w @ np.diag([1.0, -1.0, -1.0])
    M[:3, 3] = offset + center_norm / scale
    return M


def project(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N x 2, OpenCV) and depths (N,) of normalized-space points."""
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    uv = (cam @ K.T)[:, :2] / z[:, None]
    return uv, z
