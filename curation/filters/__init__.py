"""Clip filters (paper 3.2) and the textured label: every rule runs on every clip, so the audit has
every measured value even for rejected clips; the first failing rule in RULES' order decides.

A clip is `load_clip`'s dict: meta, cameras, frames (RGBA, views side by side), verts, faces.
A rule that raises is not caught here: the pipeline records the clip as an error with the traceback.
"""
from __future__ import annotations

# Modules, not their same-named functions: binding the functions here would shadow the submodules
# (curation.filters.bounds would be a function, and mock.patch of a module attribute would miss).
from curation.filters import atypical_motion, bounds, degenerate, scene_like, ssim_motion, texture_label
from curation.filters.settings import FilterSettings, RuleResult

# Decision order: what the asset is (a scene, broken geometry) before how it moves, so a scene whose
# few props barely move is recorded as a scene, not as a static clip.
RULES = (scene_like.scene_like, degenerate.degenerate, bounds.bounds, ssim_motion.ssim_motion,
         atypical_motion.atypical_motion)

# What can be decided from the vertices alone, before a single image is rendered (`geometry_gate`):
# the same rules in the same order, the static test by its displacement half. A clip that fails one
# of these is rejected by the same rule it would be after rendering (an atypical clip whose images
# would also have been static is the one exception: it is recorded as atypical_motion).
GEOMETRY_RULES = (scene_like.scene_like, degenerate.degenerate, bounds.bounds, ssim_motion.static_geometry,
                  atypical_motion.atypical_motion)

__all__ = ["FilterSettings", "RuleResult", "RULES", "GEOMETRY_RULES", "run_filters", "geometry_gate", "gate"]


def run_filters(clip: dict, settings: FilterSettings) -> tuple[str, str | None, list[RuleResult], dict]:
    """(status "accepted" | "rejected", the deciding rule or None, every rule's result, the label)."""
    results = [rule(clip, settings) for rule in RULES]
    failed = next((r.rule for r in results if not r.passed), None)
    label = texture_label.texture_label(clip, settings)
    return ("accepted" if failed is None else "rejected"), failed, results, label


def geometry_gate(clip: dict, settings: FilterSettings) -> tuple[str | None, list[RuleResult]]:
    """(the first geometry rule the clip fails or None, every geometry rule's result). `clip` needs
    verts, faces, meta (keyframes, render.volume_size) and cameras; no frames."""
    results = [rule(clip, settings) for rule in GEOMETRY_RULES]
    return next((r.rule for r in results if not r.passed), None), results


def gate(clip: dict, settings: dict) -> dict:
    """The entry point a Blender job calls (by module name, `JobSettings.gate`) before rendering a
    clip: {"rule": the deciding rule or None, "results": [RuleResult as a dict, ...]}."""
    import dataclasses

    rule, results = geometry_gate(clip, FilterSettings(**settings))
    return {"rule": rule, "results": [dataclasses.asdict(r) for r in results]}
