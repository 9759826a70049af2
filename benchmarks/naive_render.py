"""The naive baseline for benchmarks/render_clip.py: the per-view render loop of typical public
Blender dataset scripts (runs in its own process, importing bpy).

`python benchmarks/naive_render.py ASSET META_JSON OUT_DIR` renders the keyframes, light and
cameras that our renderer recorded in META_JSON, one bpy.ops.render.render(write_still=True) per
view, with Blender's defaults otherwise (PNG compression 15, persistent data off). Prints one
JSON line: {"import_s", "loop_s", "images"}.
"""
import json
import math
import os
import sys
import time

import bpy
import numpy as np
from mathutils import Matrix

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from render.cameras import blender_camera_matrix, camera_distance, orbit_views  # noqa: E402
from render.lighting import apply_light  # noqa: E402


def main(asset: str, meta_path: str, out_dir: str) -> None:
    with open(meta_path) as f:
        meta = json.load(f)
    r = meta["render"]
    t0 = time.perf_counter()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=asset)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = r["samples"]
    scene.cycles.use_denoising = r["denoise"]
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_prefilter = r["denoise_prefilter"]  # the same denoiser as ours
    scene.render.resolution_x = scene.render.resolution_y = r["resolution"]
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.color_mode = "RGBA"  # default PNG otherwise: 8 bit, compression 15
    scene.view_settings.view_transform = "Standard"
    apply_light({k: r[k] for k in ("hdri", "rotation_deg", "strength")})
    # Same cameras as ours: the orbit in normalized space, mapped back with the clip's normalization.
    norm = meta["normalization"]
    d = camera_distance(r["volume_size"], r["fov_deg"], r["elevation_deg"])
    cams = []
    for v in orbit_views(r["views"], r["resolution"], r["fov_deg"], r["elevation_deg"], r["volume_size"]):
        data = bpy.data.cameras.new(v["name"])
        data.angle = math.radians(r["fov_deg"])
        data.clip_start = 0.01 / norm["scale"]
        data.clip_end = (d + 2.0 * r["volume_size"]) / norm["scale"]
        cam = bpy.data.objects.new(v["name"], data)
        cam.matrix_world = Matrix(blender_camera_matrix(v["w2c"], np.asarray(norm["offset"]), norm["scale"]).tolist())
        scene.collection.objects.link(cam)
        cams.append(cam)
    t1 = time.perf_counter()
    for t, frame in enumerate(meta["keyframes"]):
        whole = math.floor(frame)
        scene.frame_set(whole, subframe=frame - whole)
        for i, cam in enumerate(cams):
            scene.camera = cam
            scene.render.filepath = os.path.join(out_dir, f"frame{t:02d}_view{i}.png")
            bpy.ops.render.render(write_still=True)
    t2 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "loop_s": t2 - t1, "images": len(meta["keyframes"]) * len(cams)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
