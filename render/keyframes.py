"""Choose the T keyframes of a clip from its source frame range (pure numpy, no bpy).

Paper 4.1: 30 keyframes per animation, chosen at random, consecutive ones at most 3 frames apart.
A clip with fewer source frames than T keyframes gets T evenly spaced sub-frames over its whole range
(policy "subframes", Blender evaluates fractional frames), or a rejection (policy "reject"); a clip
shorter than `min_source_frames` is rejected under both, since it carries too little motion.

`choose_windows` places the window by motion instead of at random (selection "motion"): the gaps
are drawn exactly as the paper's random choice draws them, so a window spans the same frames either
way, and only its offset differs: the one whose frames hold the most vertex motion. It also takes up
to N non-overlapping windows from an animation long enough to hold them, each from its own seeded
stream (the first window's stream is the paper's, so N=1 and "random" give the paper's choice).
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


def short_clip_keyframes(frame_start: int, frame_end: int, count: int, short_clip: str = "subframes",
                         min_source_frames: int = 8) -> tuple[np.ndarray, bool]:
    """An animation with fewer source frames than keyframes: (T evenly spaced sub-frames over
    [start, end], True), or ClipTooShort under the `reject` policy or below `min_source_frames`."""
    n_frames = int(frame_end) - int(frame_start) + 1
    if n_frames < min_source_frames:
        raise ClipTooShort(f"{n_frames} source frames < min_source_frames={min_source_frames}")
    if short_clip == "reject":
        raise ClipTooShort(f"{n_frames} source frames < {count} keyframes (policy: reject)")
    if short_clip != "subframes":
        raise ValueError(f"unknown short_clip policy {short_clip!r}")
    return np.linspace(frame_start, frame_end, count), True


SELECTIONS = ("random", "motion")


def choose_windows(frame_start: int, frame_end: int, count: int, max_spacing: int,
                   rngs: list[np.random.Generator], short_clip: str = "subframes", min_source_frames: int = 8,
                   selection: str = "random", motion: np.ndarray | None = None) -> list[tuple[np.ndarray, bool, dict]]:
    """Up to len(rngs) non-overlapping windows: [(keyframes, used_subframes, window info)], the first
    one first. `motion` (selection "motion"): per source-frame step, how far the vertices move from
    frame start+i to start+i+1 (len = number of source frames - 1). Window info: selection, first and
    last source frame, motion score (the window's share of the action's motion) where known."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown keyframe selection {selection!r} (one of {SELECTIONS})")
    n_frames = int(frame_end) - int(frame_start) + 1
    if n_frames < count:  # sub-frames or a rejection: one window over the whole range
        frames, sub = short_clip_keyframes(frame_start, frame_end, count, short_clip, min_source_frames)
        return [(frames, sub, {"selection": selection, "first": float(frames[0]), "last": float(frames[-1])})]
    if n_frames < min_source_frames:
        raise ClipTooShort(f"{n_frames} source frames < min_source_frames={min_source_frames}")
    budget = n_frames - 1
    cum = None
    if selection == "motion":
        if motion is None or len(motion) != budget:
            raise ValueError(f"selection 'motion' needs the motion of {budget} frame steps, got "
                             f"{None if motion is None else len(motion)}")
        cum = np.concatenate([[0.0], np.cumsum(np.asarray(motion, np.float64))])
    total = float(cum[-1]) if cum is not None else 0.0
    taken: list[tuple[int, int]] = []
    out = []
    for rng in rngs:
        gaps = rng.integers(1, max_spacing + 1, size=count - 1)  # the paper's: T-1 gaps of 1..max_spacing
        while gaps.sum() > budget:
            idx = rng.choice(np.flatnonzero(gaps > 1))
            gaps[idx] -= 1
        span = int(gaps.sum())
        drawn = int(rng.integers(0, budget - span + 1))  # drawn in both modes: the stream stays the paper's
        offsets = np.arange(budget - span + 1)
        free = np.ones(len(offsets), bool)
        for a, b in taken:
            free &= (offsets > b) | (offsets + span < a)
        if not free.any():
            break  # the animation holds no more windows of this length
        if selection == "motion":
            scores = cum[offsets + span] - cum[offsets]
            scores[~free] = -1.0
            offset = int(np.argmax(scores))  # the earliest of equals
        else:
            offset = drawn if free[drawn] else int(rng.choice(offsets[free]))
        taken.append((offset, offset + span))
        frames = frame_start + offset + np.concatenate([[0], np.cumsum(gaps)])
        info = {"selection": selection, "first": int(frames[0]), "last": int(frames[-1])}
        if cum is not None:
            info["motion_score"] = round(float(cum[offset + span] - cum[offset]) / total, 5) if total > 0 else 0.0
        out.append((frames.astype(np.float64), False, info))
    return out
