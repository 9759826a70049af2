"""Choose the T keyframes of a clip from its source frame range (pure numpy, no bpy).

Paper 4.1: 30 keyframes per animation, chosen at random, consecutive ones at most 3 frames apart.
A clip with fewer source frames than T keyframes gets T evenly spaced sub-frames over its whole range
(policy "subframes", Blender evaluates fractional frames), or a rejection (policy "reject"); a clip
shorter than `min_source_frames` is rejected under both, since it carries too little motion.
"""
from __future__ import annotations

import hashlib

import numpy as np


class ClipTooShort(Exception):
    """The clip cannot give T keyframes under the configured policy; the message says why."""


def clip_seed(seed: int, uid: str, animation_index: int) -> int:
    """A stable 63-bit seed per (run seed, asset, animation): same clip, same choices, any machine."""
    h = hashlib.sha256(f"{seed}:{uid}:{animation_index}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def choose_keyframes(frame_start: int, frame_end: int, count: int, max_spacing: int,
                     rng: np.random.Generator, short_clip: str = "subframes",
                     min_source_frames: int = 8) -> tuple[np.ndarray, bool]:
    """Return (keyframes as float64 source frame numbers, used_subframes).

    Integer keyframes: T-1 gaps drawn from {1..max_spacing}, shrunk at random until they fit the
    clip, then placed at a random offset. Sub-frames: T evenly spaced frames over [start, end].
    """
    n_frames = int(frame_end) - int(frame_start) + 1
    if n_frames < min_source_frames:
        raise ClipTooShort(f"{n_frames} source frames < min_source_frames={min_source_frames}")
    if n_frames >= count:
        gaps = rng.integers(1, max_spacing + 1, size=count - 1)
        budget = n_frames - 1
        while gaps.sum() > budget:  # shrink a random gap that can still shrink
            idx = rng.choice(np.flatnonzero(gaps > 1))
            gaps[idx] -= 1
        offset = rng.integers(0, budget - gaps.sum() + 1)
        frames = frame_start + offset + np.concatenate([[0], np.cumsum(gaps)])
        return frames.astype(np.float64), False
    if short_clip == "reject":
        raise ClipTooShort(f"{n_frames} source frames < {count} keyframes (policy: reject)")
    if short_clip != "subframes":
        raise ValueError(f"unknown short_clip policy {short_clip!r}")
    return np.linspace(frame_start, frame_end, count), True
