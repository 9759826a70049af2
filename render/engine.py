"""Render engine, cameras and per-view rendering (bpy).

Speed: Cycles keeps its scene between renders (persistent data), so switching the camera between
the 4 views re-syncs nothing and a new frame re-syncs only what moved; views are written as
uncompressed PNG (the clip writer compresses the combined frame once).
"""
from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

_ENGINE_IDS = {"cycles": "CYCLES", "eevee": "BLENDER_EEVEE", "workbench": "BLENDER_WORKBENCH"}


def configure(rs) -> dict:
    """Apply RenderSettings to the scene; returns what was actually used (e.g. the GPU backend)."""
    scene = bpy.context.scene
    r = scene.render
    r.engine = _ENGINE_IDS[rs.engine]
    r.resolution_x = r.resolution_y = rs.resolution
    r.resolution_percentage = 100
    r.film_transparent = True
    r.use_persistent_data = True
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "RGBA"
    r.image_settings.color_depth = "8"
    r.image_settings.compression = 0
    scene.view_settings.view_transform = "Standard"
    if rs.threads > 0:  # one Ray task per CPU slot: each Blender keeps to its share
        r.threads_mode = "FIXED"
        r.threads = rs.threads
    used = {"engine": rs.engine, "samples": rs.samples, "denoise": rs.denoise,
            "denoise_prefilter": rs.denoise_prefilter, "device": "CPU"}
    if rs.engine == "cycles":
        c = scene.cycles
        c.samples = rs.samples
        c.use_denoising = rs.denoise
        c.denoiser = "OPENIMAGEDENOISE"
        c.denoising_prefilter = rs.denoise_prefilter
        c.device = "CPU"
        if rs.device == "GPU":
            backend = _enable_gpu()
            if backend:
                c.device = "GPU"
                used["device"] = f"GPU:{backend}"
    elif rs.engine == "eevee":
        scene.eevee.taa_render_samples = rs.samples
    else:  # workbench: no environment light; flat studio lighting, fixed sampling
        scene.display.shading.light = "STUDIO"
        scene.display.shading.color_type = "TEXTURE"
    return used


def _enable_gpu() -> str | None:
    """First Cycles GPU backend with a device here, all its devices on; None if there is none."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:  # backend not compiled into this build
            continue
        prefs.get_devices()
        devices = [d for d in prefs.devices if d.type == backend]
        if devices:
            for d in prefs.devices:
                d.use = d.type == backend
            return backend
    return None


def make_cameras(views: list[dict], fov_deg: float) -> list[bpy.types.Object]:
    cams = []
    for v in views:
        data = bpy.data.cameras.new(v["name"])
        data.lens_unit = "FOV"
        data.angle = np.radians(fov_deg)
        data.sensor_fit = "AUTO"
        obj = bpy.data.objects.new(v["name"], data)
        bpy.context.scene.collection.objects.link(obj)
        cams.append(obj)
    return cams


def place_cameras(cams, matrices: list[np.ndarray], clip_start: float, clip_end: float) -> None:
    for cam, M in zip(cams, matrices):
        cam.matrix_world = Matrix(M.tolist())
        cam.data.clip_start = clip_start
        cam.data.clip_end = clip_end


def render_view(cam, path: str) -> None:
    scene = bpy.context.scene
    scene.camera = cam
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
