"""The textured / textureless label (paper 3.2), from the evidence the renderer recorded in meta.json.

Not a pass/fail rule: both kinds are kept, in separate shards. Textured when
- a material binds an image into base colour (scene evidence) and that image varies in colour, or
- the file embeds a varying image and the meshes have UVs, even when no material binds it (the
  shared fox.glb: Blender then renders it flat, but the asset is textured and a fixed file binds it).
A flat image (one colour) is no texture. Measured image std (largest channel): demo checkers 0.27
(scene) / 0.26 (file), fox.glb 0.30; the robot and flat demo assets have no image at all.
"""
from __future__ import annotations

from curation.filters.settings import FilterSettings


def _largest_std(images: list) -> float:
    return max((max(im["std_rgb"]) for im in images if im.get("std_rgb")), default=0.0)


def texture_label(clip: dict, settings: FilterSettings) -> dict:
    evidence = clip["meta"].get("texture_evidence") or {}
    scene, file = evidence.get("scene") or {}, evidence.get("file") or {}
    bound = [im for m in (scene.get("materials") or {}).values() if m.get("image_texture")
             for im in m.get("images", [])]
    scene_std, file_std = _largest_std(bound), _largest_std(file.get("images") or [])
    uv = int(scene.get("meshes_with_uv", 0))
    file_binds = int(file.get("n_materials_with_base_color_texture", 0))
    if scene_std > settings.textured_min_image_std:
        textured, source = True, "scene_bound_image"
    elif file_std > settings.textured_min_image_std and uv > 0:
        textured, source = True, "file_image_bound" if file_binds else "file_image_unbound"
    elif bound or file.get("images"):  # an image that is one colour, or that no UV maps onto the surface
        textured, source = False, "image_without_uv" if file_std > settings.textured_min_image_std else "flat_image"
    else:
        textured, source = False, "no_image" if evidence else "no_evidence"
    return {"textured": textured, "label_source": source,
            "scene_image_std": round(float(scene_std), 5), "file_image_std": round(float(file_std), 5),
            "n_textured_materials": int(scene.get("n_textured_materials", 0)),
            "textured_face_fraction": float(scene.get("textured_face_fraction", 0.0)),
            "meshes_with_uv": uv, "file_bound_textures": file_binds,
            "has_color_attributes": bool(scene.get("has_color_attributes", False))}
