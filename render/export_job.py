"""Convert a driven GLB (morph-target animation) to FBX or Alembic with Blender's own exporters (runs
inside bpy), for engines that import per-vertex animation from those (Unreal, Unity, DCC tools).

The GLB is imported with the scene's frame rate set to the animation's, so keyframe k lands on scene
frame k; then
- FBX: the shape keys and their animated values (one blend-shape channel per keyframe), baked over
  frames 0..T-1; Y up, -Z forward, as game engines expect;
- Alembic: a per-frame vertex cache (every vertex's position at every frame) over frames 0..T-1.
Started by `render.launcher.export_animation` as `python -m render.export_job --request REQ.json`.
"""
from __future__ import annotations

import os
import sys
from fractions import Fraction

from render.job_request import serve, start_job_process

start_job_process()

import bpy  # noqa: E402


def set_frame_rate(scene, fps: float) -> None:
    """Blender's frame rate is fps / fps_base: an integer ratio near the requested one (29.97 ->
    30000 / 1001)."""
    ratio = Fraction(fps).limit_denominator(1001)
    scene.render.fps, scene.render.fps_base = ratio.numerator, ratio.denominator


def export(req: dict) -> dict:
    glb, out, fmt, frames = req["glb"], req["out"], req["format"], int(req["frames"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    set_frame_rate(scene, float(req["fps"]))
    bpy.ops.import_scene.gltf(filepath=glb)
    scene.frame_start, scene.frame_end = 0, frames - 1
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}.{fmt}"  # the exporters write in place: rename when complete
    if fmt == "fbx":
        bpy.ops.export_scene.fbx(filepath=tmp, use_selection=False, object_types={"MESH", "EMPTY"},
                                 bake_anim=True, bake_anim_use_all_bones=False, bake_anim_use_nla_strips=False,
                                 bake_anim_use_all_actions=False, bake_anim_force_startend_keying=True,
                                 bake_anim_step=1.0, bake_anim_simplify_factor=0.0, add_leaf_bones=False,
                                 axis_forward="-Z", axis_up="Y", use_mesh_modifiers=False)
    elif fmt == "abc":
        bpy.ops.wm.alembic_export(filepath=tmp, start=0, end=frames - 1, selected=False, uvs=True,
                                  normals=True, face_sets=True, export_hair=False, export_particles=False,
                                  evaluation_mode="RENDER")
    else:
        raise ValueError(f"unknown export format {fmt!r}: fbx or abc")
    os.replace(tmp, out)
    meshes = [o for o in scene.objects if o.type == "MESH"]
    return {"status": "ok", "path": out, "meshes": len(meshes),
            "vertices": sum(len(o.data.vertices) for o in meshes), "frames": frames}


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:], __doc__, export))
