"""Run as a script with the project's Python (bpy): import a GLB, FBX or Alembic file in Blender (at
24 fps, animation from frame 0) and print, as JSON, every mesh vertex's world position (Blender's
frame) at the given scene frames. `reimport` runs it from a test (bpy is imported only in the
script's own process)."""
import json
import os
import subprocess
import sys

import numpy as np


def reimport(glb: str, frames) -> dict:
    """{"fps", "shape_keys", "frames": [world positions per frame]} of `glb` (or .fbx, .abc), from a
    fresh Blender."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), glb, *map(str, frames)],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("REIMPORT "))[9:])


def main(path: str, frames: list[float]) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    if path.lower().endswith(".fbx"):
        bpy.ops.import_scene.fbx(filepath=path, anim_offset=0.0)  # keyframe k at frame k, as exported
    elif path.lower().endswith(".abc"):
        bpy.ops.wm.alembic_import(filepath=path)
    else:
        bpy.ops.import_scene.gltf(filepath=path)
    objects = [o for o in scene.objects if o.type == "MESH"]
    out = {"fps": scene.render.fps, "shape_keys": [len(o.data.shape_keys.key_blocks) if o.data.shape_keys else 0
                                                   for o in objects], "frames": []}
    for f in frames:
        scene.frame_set(int(f), subframe=f - int(f))
        deps = bpy.context.evaluated_depsgraph_get()
        points = []
        for o in objects:
            me = o.evaluated_get(deps).to_mesh()
            co = np.empty(len(me.vertices) * 3)
            me.vertices.foreach_get("co", co)
            m = np.array(o.matrix_world)
            points.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
        out["frames"].append(np.concatenate(points).tolist())
    print("REIMPORT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], [float(f) for f in sys.argv[2:]])
