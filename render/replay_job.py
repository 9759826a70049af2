"""Render given vertex positions of a clip with the clip's own cameras and light (runs inside bpy).

For evaluation: the asset is imported and posed at the clip's first keyframe exactly as when the
clip was rendered; its counted meshes are frozen into static copies (evaluated geometry, materials
kept, world transform baked), whose vertices, in the renderer's order, are then set to each frame's
positions (normalised space, as `verts.npy`) and rendered from the clip's cameras under its HDRI.
Started by `render.launcher.replay_clip` as `python -m render.replay_job --request REQ.json`.
"""
from __future__ import annotations

import sys

from render.job_request import serve, start_job_process

start_job_process()

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from render import cameras, engine, lighting, scene  # noqa: E402
from render.clip_writer import ClipWriter  # noqa: E402
from render.settings import JobSettings  # noqa: E402


def frozen_copies(meshes) -> list:
    """Static world-space copies of the meshes at the current frame; the originals stop rendering."""
    deps = bpy.context.evaluated_depsgraph_get()
    copies = []
    for obj in meshes:
        ev = obj.evaluated_get(deps)
        me = bpy.data.meshes.new_from_object(ev, preserve_all_data_layers=True, depsgraph=deps)
        me.transform(ev.matrix_world)
        copy = bpy.data.objects.new(f"{obj.name}.replay", me)
        bpy.context.scene.collection.objects.link(copy)
        copies.append(copy)
    for obj in bpy.context.scene.objects:
        if obj not in copies:
            obj.hide_render = True
    return copies


def replay(req: dict) -> dict:
    meta, cams_json = req["meta"], req["cameras"]
    positions = np.load(req["positions"]).astype(np.float64)                      # (T, V, 3) normalised
    job = JobSettings.from_dict(req["settings"])
    scene.reset_blender()
    scene.import_asset(req["asset"])
    meshes = scene.counted_meshes()
    actions = scene.animations()
    rest = scene.RestState()
    scene.play(actions[meta["animation_index"]], rest)
    scene.set_frame(meta["keyframes"][0])
    copies = frozen_copies(meshes)
    counts = [len(c.data.vertices) for c in copies]
    if sum(counts) != positions.shape[1]:
        raise ValueError(f"{req['asset']}: {sum(counts)} vertices at the clip's first keyframe, "
                         f"{positions.shape[1]} positions given")
    engine.configure(job.render)
    views = [{"name": v["name"], "w2c": np.array(v["w2c"])} for v in cams_json["views"]]
    cams = engine.make_cameras(views, job.render.fov_deg)
    offset, scale = np.array(meta["normalization"]["offset"]), float(meta["normalization"]["scale"])
    d = cameras.camera_distance(job.render.volume_size, job.render.fov_deg, job.render.elevation_deg)
    engine.place_cameras(cams, [cameras.blender_camera_matrix(v["w2c"], offset, scale) for v in views],
                         clip_start=0.01 / scale, clip_end=(d + 2.0 * job.render.volume_size) / scale)
    r = meta["render"]
    lighting.apply_light({"hdri": r["hdri"], "rotation_deg": r["rotation_deg"], "strength": r["strength"]})
    writer = ClipWriter(req["out_dir"], meta["key"])
    try:
        for t, frame in enumerate(positions):
            world = frame / scale + offset
            base = 0
            for copy, n in zip(copies, counts):
                copy.data.vertices.foreach_set("co", world[base:base + n].ravel())
                copy.data.update()
                base += n
            for vi, cam in enumerate(cams):
                engine.render_view(cam, writer.view_path(vi))
            writer.write_frame(t, len(cams))
        return {"status": "ok", "dir": writer.commit()}
    except BaseException:
        writer.abort()
        raise


def main(argv=None) -> int:
    return serve(argv, __doc__, replay)


if __name__ == "__main__":
    sys.exit(main())
