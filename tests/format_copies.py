"""Run as a script with the project's Python (bpy): write one GLB's scene again as FBX, USD, OBJ and
.blend with Blender's own exporters, plus a COLLADA file (Blender 5 exports none: a minimal valid
document), each named `<stem>_<format>.<ext>`. `format_copies` runs it from a test (bpy stays in the
script's own process)."""
import json
import os
import subprocess
import sys

# a one-triangle COLLADA 1.4.1 document: what a .dae in a source looks like to the pipeline
DAE = """<?xml version="1.0" encoding="utf-8"?>
<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema" version="1.4.1">
  <asset><up_axis>Z_UP</up_axis></asset>
  <library_geometries><geometry id="tri"><mesh>
    <source id="p"><float_array id="pa" count="9">0 0 0 1 0 0 0 1 0</float_array>
      <technique_common><accessor source="#pa" count="3" stride="3">
        <param name="X" type="float"/><param name="Y" type="float"/><param name="Z" type="float"/>
      </accessor></technique_common></source>
    <vertices id="v"><input semantic="POSITION" source="#p"/></vertices>
    <triangles count="1"><input semantic="VERTEX" source="#v" offset="0"/><p>0 1 2</p></triangles>
  </mesh></geometry></library_geometries>
  <library_visual_scenes><visual_scene id="s"><node id="n"><instance_geometry url="#tri"/></node>
  </visual_scene></library_visual_scenes>
  <scene><instance_visual_scene url="#s"/></scene>
</COLLADA>
"""


def format_copies(glb: str, out_dir: str) -> dict:
    """{format: path} of the copies of `glb` written into `out_dir`, from a fresh Blender."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), glb, out_dir],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("COPIES "))[7:])


def main(glb: str, out_dir: str) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)
    # the importer's hidden bone-shape meshes are not the asset: FBX would export them as meshes
    for o in [o for o in bpy.context.scene.objects if o.type == "MESH" and not o.visible_get()]:
        bpy.data.objects.remove(o)
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(glb))[0]
    paths = {f: os.path.join(out_dir, f"{stem}_{f}.{ext}")
             for f, ext in (("fbx", "fbx"), ("usd", "usdc"), ("obj", "obj"), ("blend", "blend"), ("dae", "dae"))}
    bpy.ops.export_scene.fbx(filepath=paths["fbx"], bake_anim=True, path_mode="COPY", embed_textures=True)
    bpy.ops.wm.usd_export(filepath=paths["usd"], export_animation=True)
    bpy.ops.wm.obj_export(filepath=paths["obj"])  # with its .mtl beside it; OBJ holds no animation
    bpy.ops.wm.save_as_mainfile(filepath=paths["blend"], copy=True)
    with open(paths["dae"], "w") as f:
        f.write(DAE)
    print("COPIES " + json.dumps(paths))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
