"""Leaves the scene volume (paper 3.2): any vertex of any keyframe outside the cube the cameras frame.

Normalization makes the first keyframe fill the unit cube; the cameras frame a cube of side
`render.volume_size` (1.5). A vertex a little outside that cube can still be in view (the frustum
is wider than the cube at the cube's centre and far side), hence the margin. Measured at 256 px: clips
whose alpha never reaches an image border went at most to 0.887 (rigid_spinner_0; robot Wave 0.844,
Dance 0.79); clips cut by the border went at least to 0.968 (robot Jump; robot Death 1.65,
creature_plain 1.21, creature_textured 1.24, multi_anim_0 1.36, multi_anim_2 1.04, runaway 6.48).
The limit 0.75 + 0.175 = 0.925 splits them. The border pixels are recorded as the image-side evidence.
"""
from __future__ import annotations

import numpy as np

from curation.filters.settings import FilterSettings, RuleResult


def border_alpha_pixels(frames: list, n_views: int) -> list[int]:
    """Per view: pixels with alpha > 0 on the outer one-pixel ring, summed over all keyframes."""
    stack = np.stack(frames)
    if stack.shape[-1] != 4:
        return [0] * n_views
    T, H, W4, _ = stack.shape
    a = stack[..., 3].reshape(T, H, n_views, W4 // n_views) > 0
    ring = a[:, 0].sum(axis=(0, 2)) + a[:, -1].sum(axis=(0, 2)) \
        + a[:, 1:-1, :, 0].sum(axis=(0, 1)) + a[:, 1:-1, :, -1].sum(axis=(0, 1))
    return [int(v) for v in ring]


def bounds(clip: dict, settings: FilterSettings) -> RuleResult:
    verts = clip["verts"]
    limit = float(clip["meta"]["render"]["volume_size"]) / 2.0 + settings.bounds_margin
    reach = np.abs(verts).max(axis=(1, 2))  # per keyframe, largest |coordinate|
    outside = (np.abs(verts) > limit).any(axis=-1).mean(axis=1)  # per keyframe, share of vertices out
    values = {"bounds_max_abs": round(float(reach.max()), 5), "bounds_limit": round(limit, 5),
              "bounds_frames_outside": int((outside > 0).sum()),
              "bounds_max_fraction_outside": round(float(outside.max()), 5),
              # from the images, when there are any (not before rendering)
              **({"bounds_border_alpha_pixels": border_alpha_pixels(clip["frames"], len(clip["cameras"]["views"]))}
                 if clip.get("frames") else {})}
    if not np.isfinite(reach).all() or reach.max() > limit:
        first = int(np.argmax(~(reach <= limit)))
        return RuleResult("bounds", False,
                          f"vertices reach {values['bounds_max_abs']:.3f} > {limit:.3f} (volume/2 + margin) "
                          f"in {values['bounds_frames_outside']} keyframes, first at keyframe {first}", values)
    return RuleResult("bounds", True, "", values)
