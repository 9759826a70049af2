"""A driving video as the denoiser's input: an mp4 (imageio with its bundled ffmpeg) or a folder of
frames, T frames picked evenly over it, centre-cropped to a square, resized, and matted on white
like the training views (RGBA frames composite over white; RGB frames are taken as they are)."""
from __future__ import annotations

import glob
import os

import numpy as np
from PIL import Image

from dataset.view_tensors import matted_rgb

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def read_video(path: str) -> tuple[list[np.ndarray], float | None]:
    """(frames as H x W x 3|4 uint8, the video's fps or None for a folder)."""
    if os.path.isdir(path):
        files = sorted(f for f in glob.glob(os.path.join(path, "*")) if f.lower().endswith(FRAME_EXTENSIONS))
        if not files:
            raise ValueError(f"{path}: no {'/'.join(FRAME_EXTENSIONS)} frames in the folder")
        return [np.asarray(Image.open(f)) for f in files], None
    import imageio.v3 as iio

    meta = iio.immeta(path)
    frames = [np.asarray(f) for f in iio.imiter(path)]
    if not frames:
        raise ValueError(f"{path}: no frames could be read")
    return frames, meta.get("fps")


def square_rgba(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.shape[-1] == 3:
        frame = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    h, w = frame.shape[:2]
    s = min(h, w)
    return np.ascontiguousarray(frame[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])


def video_tensor(path: str, frames: int, size: int) -> tuple[np.ndarray, np.ndarray, float | None]:
    """((frames, 3, size, size) float32 in [-1, 1], the source frame index of each, the video's fps)."""
    video, fps = read_video(path)
    picks = np.round(np.linspace(0, len(video) - 1, frames)).astype(int)
    return np.stack([matted_rgb(square_rgba(video[i]), size) for i in picks]), picks, fps
