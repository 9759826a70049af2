"""Rendered views as network inputs: RGB matted on white, resized, and (for the VAE) per-pixel
Pluecker ray embeddings from the clip's OpenCV cameras (paper 3.3: RGB + 6 = 9 channels)."""
from __future__ import annotations

import functools
import json

import numpy as np
from PIL import Image

BACKGROUND = 1.0  # white: the matte used for training views and, at drive time, for video frames


def matted_rgb(rgba: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 4) uint8 -> (3, size, size) float32 in [-1, 1], composited over BACKGROUND."""
    img = Image.fromarray(rgba, "RGBA")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    rgb = x[..., :3] * x[..., 3:] + BACKGROUND * (1.0 - x[..., 3:])
    return (rgb * 2.0 - 1.0).transpose(2, 0, 1)


def scaled_intrinsics(K: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """K of a width x height image resized to size x size (pixel centres at integer coordinates)."""
    sx, sy = size / width, size / height
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0], K[0, 2] = K[0, 0] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return K


def plucker_rays(K: np.ndarray, w2c: np.ndarray, size: int) -> np.ndarray:
    """(6, size, size) float32: per pixel the unit ray direction d and moment o x d, world space."""
    w2c = np.asarray(w2c, dtype=np.float64)
    R, t = w2c[:3, :3], w2c[:3, 3]
    origin = -R.T @ t
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)                 # (size, size, 3)
    d = pix @ np.linalg.inv(K).T @ R                                  # camera -> world: R^T x, row form
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    m = np.cross(np.broadcast_to(origin, d.shape), d)
    return np.concatenate([d, m], axis=-1).transpose(2, 0, 1).astype(np.float32)


def camera_rays(cameras: dict, size: int) -> np.ndarray:
    """(views, 6, size, size): the rays of every view of a clip (the same for all its keyframes).
    Memoised on the cameras: a pipeline's clips share their orbit, so a loader computes them once."""
    return _camera_rays(json.dumps(cameras, sort_keys=True), size)


@functools.lru_cache(maxsize=8)
def _camera_rays(cameras_json: str, size: int) -> np.ndarray:
    cameras = json.loads(cameras_json)
    rays = np.stack([plucker_rays(scaled_intrinsics(v["K"], cameras["width"], cameras["height"], size),
                                  v["w2c"], size) for v in cameras["views"]])
    rays.flags.writeable = False  # shared between calls
    return rays


def vae_views(frame_rgba: np.ndarray, rays: np.ndarray, size: int) -> np.ndarray:
    """(views, H, W, 4) uint8 and (views, 6, size, size) rays -> (views, 9, size, size) float32."""
    return np.stack([np.concatenate([matted_rgb(v, size), r]) for v, r in zip(frame_rgba, rays)])
