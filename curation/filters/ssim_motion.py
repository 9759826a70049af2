"""Too static (paper 3.2): SSIM of every view of frame 0 against the same view of every later frame.

Views are composited over a fixed grey, so a silhouette moving over transparency changes the image,
and compared in luminance: the question is whether anything moved, not colour fidelity. The mean
vertex displacement test of GVFDiffusion also decides: it catches clips whose images change while
the geometry stands still (texture or material playback), which give the model no motion to learn.

Measured change (1 - min SSIM, largest view): static_statue 0 at every resolution (a still scene
renders identically), scene_spread 0.0004 at 256 px, 0.004 at 48 px; the least-moving accepted clip,
multi_anim_1, 0.046 at 256 px, 0.097 at 32 px, 0.136 at 48 px; robot clips 0.097-0.22 at 256 px.
Tiny renders raise the change of moving clips (noise, coarse windows), never of still ones, so 0.01
holds at both. Mean displacement: static 0, scene_spread 0.0026; the least-moving accepted clips
robot No 0.033, Yes 0.035, multi_anim_1 0.079: GVFDiffusion's 0.01 agrees with SSIM on every clip.
"""
from __future__ import annotations

import numpy as np

from curation.filters.settings import FilterSettings, RuleResult

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709
_WIN = 7  # skimage's default SSIM window; the per-view crops below rely on it


def grey_composite(frame: np.ndarray, background: float) -> np.ndarray:
    """H x W float32 luminance in [0, 1] of an RGBA uint8 image composited over a grey background."""
    # Luminance is linear and its weights sum to 1, so compositing the luminance equals the luminance
    # of the composite, at a third of the work.
    luma = frame[..., :3] @ (_LUMA / 255.0)
    if frame.shape[-1] != 4:
        return luma
    a = frame[..., 3] * np.float32(1.0 / 255.0)
    return luma * a + background * (1.0 - a)


def ssim_per_view(frames: list, n_views: int, background: float) -> np.ndarray:
    """(T-1) x n_views SSIM of frame t against frame 0, view by view.

    One SSIM call per frame on the views side by side, then the mean of each view's block without its
    (win-1)/2 border: those windows never reach into a neighbouring view, so each block's mean equals
    a separate call on that view (skimage drops the same border), at a quarter of the calls."""
    from skimage.metrics import structural_similarity  # here: the geometry gate imports this module in Blender jobs

    ref = grey_composite(frames[0], background)
    H, W = ref.shape[0], ref.shape[1] // n_views
    pad = (_WIN - 1) // 2
    out = np.empty((len(frames) - 1, n_views))
    for t in range(1, len(frames)):
        _, S = structural_similarity(ref, grey_composite(frames[t], background), win_size=_WIN,
                                     data_range=1.0, full=True)
        blocks = S.reshape(H, n_views, W)[pad:H - pad, :, pad:W - pad]
        out[t - 1] = blocks.mean(axis=(0, 2))
    return out


def _displacement(clip: dict, settings: FilterSettings) -> tuple[float, str]:
    """The geometry half of the static test: the largest mean vertex displacement from keyframe 0,
    and the reason when it stays under `min_mean_displacement` ("" otherwise)."""
    verts = clip["verts"].astype(np.float64)
    mean_disp = round(float(np.linalg.norm(verts - verts[:1], axis=-1).mean(axis=1).max()), 5)
    if mean_disp < settings.min_mean_displacement:
        return mean_disp, (f"mean vertex displacement from frame 0 stays under {settings.min_mean_displacement} "
                           f"(max {mean_disp:.4f})")
    return mean_disp, ""


def static_geometry(clip: dict, settings: FilterSettings) -> RuleResult:
    """The static test before rendering: the displacement half only, under the same rule name (a
    clip whose vertices do not move fails `ssim_motion` whatever its images would show)."""
    mean_disp, reason = _displacement(clip, settings)
    return RuleResult("ssim_motion", not reason, reason, {"mean_displacement_max": mean_disp})


def ssim_motion(clip: dict, settings: FilterSettings) -> RuleResult:
    n_views = len(clip["cameras"]["views"])
    ssim = ssim_per_view(clip["frames"], n_views, settings.ssim_background)
    change = 1.0 - ssim.min(axis=0) if len(ssim) else np.zeros(n_views)
    mean_disp, still_geometry = _displacement(clip, settings)
    values = {"ssim_min_per_view": [round(float(v), 5) for v in ssim.min(axis=0)] if len(ssim) else [],
              "ssim_change_per_view": [round(float(v), 5) for v in change],
              "ssim_change": round(float(change.max()), 5),
              "mean_displacement_max": mean_disp}
    still_images = change.max() < settings.ssim_min_change
    reasons = []
    if still_images:
        reasons.append(f"every view stays within SSIM change {values['ssim_change']:.4f} "
                       f"< {settings.ssim_min_change} of frame 0")
    if still_geometry:
        reasons.append(still_geometry)
    return RuleResult("ssim_motion", not reasons, "; ".join(reasons), values)
