"""Atypical motion (paper 3.2: teleports, playback-like jumps): one vertex moving too far per frame.

The step is the largest per-vertex displacement between consecutive keyframes divided by their
spacing in source frames (keyframes are 1-3 frames apart, sub-frames less), in normalized units
where the first keyframe's largest side is 1. Measured at 256 px: demo clips at most 0.17 per frame,
robot clips up to 0.707 (Punch: a fist), 0.52 (Jump); a part that crosses the object's own size in
one source frame (24 fps) is a cut or a teleport, hence 1.0. Non-finite vertices fail too.
Vertex-count changes never reach here: the renderer skips those clips.
"""
from __future__ import annotations

import numpy as np

from curation.filters.settings import FilterSettings, RuleResult


def atypical_motion(clip: dict, settings: FilterSettings) -> RuleResult:
    verts = clip["verts"].astype(np.float64)
    finite = bool(np.isfinite(verts).all())
    spacing = np.diff(np.asarray(clip["meta"]["keyframes"], dtype=np.float64))
    if len(verts) < 2 or not finite:
        values = {"max_jump_per_frame": 0.0, "max_jump_keyframe": 0, "max_jump_spacing": 0.0,
                  "jump_ratio_to_next": 0.0, "verts_finite": finite}
        return RuleResult("atypical_motion", finite, "" if finite else "non-finite vertex positions", values)
    step = np.linalg.norm(np.diff(verts, axis=0), axis=-1).max(axis=1) / np.maximum(spacing, 1e-9)
    t = int(step.argmax())
    runner_up = np.sort(step)[-2] if len(step) > 1 else 0.0
    values = {"max_jump_per_frame": round(float(step[t]), 5), "max_jump_keyframe": t + 1,
              "max_jump_spacing": round(float(spacing[t]), 4),
              # a lone spike (teleport) stands far above the clip's next largest step: evidence only
              "jump_ratio_to_next": round(float(step[t] / runner_up), 3) if runner_up > 0 else 0.0,
              "verts_finite": True}
    if step[t] > settings.max_jump:
        return RuleResult("atypical_motion", False,
                          f"a vertex moves {step[t]:.3f} per source frame between keyframes {t} and {t + 1} "
                          f"(> {settings.max_jump})", values)
    return RuleResult("atypical_motion", True, "", values)
