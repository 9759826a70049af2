"""Every filter threshold and the result every rule returns.

Defaults were chosen by measuring the demo clips and the 14 robot_expressive clips rendered at the
paper's settings (256 px, 30 keyframes) and the same assets at test settings (32-48 px, 6-10
keyframes); each rule's module docstring gives the figures behind its thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FilterSettings:
    # ssim_motion: static when, in every view, 1 - min_t SSIM(frame 0, frame t) stays below this
    ssim_min_change: float = 0.01
    # ssim_motion: grey the RGBA views are composited over (a silhouette moving on transparency counts)
    ssim_background: float = 0.5
    # ssim_motion: GVFDiffusion's test, also deciding: static when mean |v_t - v_0| stays under this
    min_mean_displacement: float = 0.01
    # bounds: limit = render volume_size / 2 + margin on |x|, |y|, |z| of every vertex of every keyframe
    bounds_margin: float = 0.175
    # atypical_motion: largest per-vertex step between keyframes, per source frame (unit-cube units)
    max_jump: float = 1.0
    # scene_like: at least this many welded connected components (parts) ...
    scene_min_components: int = 10
    # ... at least this share of them standing apart (see scene_like.py: not touching another part,
    # the largest part, a ground, aside) ...
    scene_min_isolated: float = 0.5
    # ... and under this share of them moving: a scene; packed parts, or parts that move together,
    # are one character
    scene_max_moving: float = 0.5
    # degenerate: a keyframe whose second-largest bounding-box side is under this is flat in two axes
    degenerate_min_extent: float = 0.02
    # texture label: an image counts as a texture when its largest per-channel std exceeds this
    textured_min_image_std: float = 0.05
    # Decide every rule that needs only the vertices before rendering, and render only clips that
    # can still pass (false: render every clip, then decide, as the paper's pipeline does)
    geometry_first: bool = True


@dataclass
class RuleResult:
    rule: str
    passed: bool
    reason: str  # why it failed, or "" when it passed
    values: dict = field(default_factory=dict)  # every number the rule read; JSON-serializable
