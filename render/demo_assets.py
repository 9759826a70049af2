"""Seeded generator of small animated GLB files covering every case the render/curation pipeline handles.

Run as ``python -m render.demo_assets --out DIR [--seed N]`` or call ``write_demo_assets(out_dir, seed)``
inside a process that has ``bpy``. Writes ``DIR/<name>.glb`` plus ``DIR/demo_assets.json``.
Uses only bpy, numpy and the standard library (``render/`` imports nothing else from the project).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np

import bpy  # isort: skip  (first: importing bpy makes Blender's bmesh, mathutils and bpy_extras importable)
import bmesh
from bpy_extras import anim_utils
from mathutils import Matrix

FPS = 24


# ---------------------------------------------------------------- scene, export, keys


def _reset_scene(frame_end: int) -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = FPS
    scene.frame_start, scene.frame_end = 1, frame_end
    return scene


def _export_glb(path: Path) -> None:
    # The 5.0 exporter logs INFO per primitive; debug_value 1 means warnings only. (Passing export_loglevel >= 0
    # instead raises KeyError 'loglevel' inside the 5.0 exporter.) It also print()s a blank line per export:
    # capture stdout and pass on only what has content (warnings).
    saved_debug, bpy.app.debug_value = bpy.app.debug_value, 1
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            _export_glb_call(path)
    finally:
        bpy.app.debug_value = saved_debug
        if captured.getvalue().strip():
            print(captured.getvalue().strip())


def _export_glb_call(path: Path) -> None:
    bpy.ops.export_scene.gltf(
        filepath=str(path),
        export_format="GLB",
        export_apply=True,  # applies modifiers except the armature (skinning stays skinning)
        export_yup=True,
        export_texcoords=True,
        export_skins=True,
        export_morph=True,
        export_morph_animation=True,
        export_animations=True,
        export_animation_mode="ACTIONS",  # one glTF animation per action
        export_force_sampling=True,
        export_frame_range=False,
        export_current_frame=False,
        export_reset_pose_bones=True,
        # Keep all TRS channels of animated objects. Even without it, 5.0 keeps a constant channel (as 2 keys,
        # first and last frame), so static_statue's animation survives either way.
        export_optimize_animation_keep_anim_object=True,
        export_image_format="AUTO",
    )


def _new_action(id_owner, name: str) -> bpy.types.Action:
    """Assign a fresh named action so keyframe_insert fills it (and creates its slot) instead of a default one."""
    ad = id_owner.animation_data or id_owner.animation_data_create()
    ad.action = bpy.data.actions.new(name)
    return ad.action


def _set_interpolation(id_owner, kind: str) -> None:
    ad = id_owner.animation_data
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    for fc in bag.fcurves:
        for kp in fc.keyframe_points:
            kp.interpolation = kind


def _key_object(obj, path: str, frames_values) -> None:
    for frame, value in frames_values:
        setattr(obj, path, value)
        obj.keyframe_insert(path, frame=frame)


# ---------------------------------------------------------------- materials


def _flat_material(name: str, rgb) -> bpy.types.Material:
    # Blender 5.0 materials come with a node tree (Principled BSDF + output); use_nodes is deprecated.
    mat = bpy.data.materials.new(name)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*[float(c) for c in rgb], 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def _checker_material(name: str, rng: np.random.Generator, size: int = 64, cells: int = 8) -> bpy.types.Material:
    """Principled BSDF fed by a packed 64x64 colourful checker, so the GLB embeds a real texture."""
    palette = rng.uniform(0.15, 1.0, size=(cells, cells, 3))
    dark = ((np.arange(cells)[:, None] + np.arange(cells)[None, :]) % 2 == 1)
    palette[dark] *= 0.35  # alternate bright/dark cells: a checker the eye (and a metric) can follow
    rgb = np.repeat(np.repeat(palette, size // cells, axis=0), size // cells, axis=1)
    rgba = np.concatenate([rgb, np.ones((size, size, 1))], axis=2).astype(np.float32)

    img = bpy.data.images.new(f"{name}_checker", size, size, alpha=False)
    img.pixels.foreach_set(rgba.ravel())
    img.pack()

    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = img
    links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def _link_new_object(name: str, data) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    return obj


# ---------------------------------------------------------------- articulated creatures


def _tube_mesh(name: str, length: float, radii: np.ndarray, around: int, ellipse: float, axis: np.ndarray):
    """Closed tube along ``axis``: len(radii) rings of ``around`` vertices, capped, with per-loop UVs.

    Returns (mesh, ring_positions) so skin weights can be assigned per ring instead of per vertex.
    """
    n_rings = len(radii)
    t = np.linspace(0.0, length, n_rings)
    ang = np.linspace(0.0, 2 * np.pi, around, endpoint=False)
    ring_y = (radii[:, None] * np.cos(ang)).ravel()
    ring_z = (radii[:, None] * ellipse * np.sin(ang)).ravel()
    local = np.stack([np.repeat(t, around), ring_y, ring_z], axis=1)
    # Rotate the X-aligned tube so its axis becomes ``axis`` (X stays X; Z-axis tubes stand up).
    basis = np.eye(3) if axis[0] else np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    verts = local @ basis

    i, j = np.meshgrid(np.arange(n_rings - 1), np.arange(around), indexing="ij")
    i, j = i.ravel(), j.ravel()
    jn = (j + 1) % around
    quads = np.stack([i * around + j, i * around + jn, (i + 1) * around + jn, (i + 1) * around + j], axis=1)
    cap0 = list(range(around))[::-1]
    cap1 = [(n_rings - 1) * around + k for k in range(around)]
    faces = quads.tolist() + [cap0, cap1]

    me = bpy.data.meshes.new(name)
    me.from_pydata(verts.tolist(), [], faces)
    # UVs: u around the tube (seam handled per loop, so u reaches 1.0), v along it; caps squeezed to a corner.
    u = np.stack([j, j + 1, j + 1, j], axis=1) / around
    v = np.stack([i, i, i + 1, i + 1], axis=1) / (n_rings - 1)
    quad_uv = np.stack([u.ravel(), v.ravel()], axis=1)
    cap_uv = np.full((2 * around, 2), 0.02)
    uv_layer = me.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", np.concatenate([quad_uv, cap_uv]).astype(np.float32).ravel())
    me.validate()
    me.shade_smooth()
    return me, t


def _armature(name: str, axis: np.ndarray, seg_len: float, n_bones: int) -> bpy.types.Object:
    arm = _link_new_object(name, bpy.data.armatures.new(name))
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")  # bones can only be created in edit mode
    parent = None
    for b in range(n_bones):
        eb = arm.data.edit_bones.new(f"Bone{b}")
        eb.head, eb.tail = axis * seg_len * b, axis * seg_len * (b + 1)
        eb.parent, eb.use_connect = parent, parent is not None
        parent = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in arm.pose.bones:
        pb.rotation_mode = "XYZ"  # euler keys are easier to write; glTF stores quaternions anyway
    return arm


def _creature(name, material, *, length, radii, n_bones, axis, ellipse=1.0, around=16):
    """Tube skinned to a chain of bones; weights blend linearly between neighbouring bone centres."""
    axis = np.asarray(axis, dtype=float)
    me, ring_t = _tube_mesh(f"{name}_body", length, np.asarray(radii), around, ellipse, axis)
    me.materials.append(material)
    body = _link_new_object(f"{name}_body", me)
    arm = _armature(name, axis, length / n_bones, n_bones)
    body.parent = arm
    body.modifiers.new("Armature", "ARMATURE").object = arm

    seg = length / n_bones
    centres = (np.arange(n_bones) + 0.5) * seg
    w = np.clip(1.0 - np.abs(ring_t[:, None] - centres[None, :]) / seg, 0.0, 1.0)
    w[ring_t <= centres[0], 0] = 1.0  # ends belong fully to the end bones
    w[ring_t >= centres[-1], -1] = 1.0
    w /= w.sum(axis=1, keepdims=True)
    groups = [body.vertex_groups.new(name=f"Bone{b}") for b in range(n_bones)]
    for r in range(len(ring_t)):  # loop over rings (a handful), each ring shares one weight row
        ring = list(range(r * around, (r + 1) * around))
        for b, g in enumerate(groups):
            if w[r, b] > 0:
                g.add(ring, float(w[r, b]), "REPLACE")
    return arm


def _bone_wave(arm, action_name: str, frames: int, amp: float, phase: float, channel: int, step: int = 4):
    """Travelling sine wave on one euler channel of every bone, looping over ``frames`` (keys at 1..frames).
    Amplitudes stay small (about 0.15 rad per bone): the bends add up along the chain, and a creature
    that straightens from a bent first keyframe must stay inside the camera volume for the "accept" cases."""
    _new_action(arm, action_name)
    keys = sorted(set(range(1, frames + 1, step)) | {frames})
    for b, pb in enumerate(arm.pose.bones):
        for f in keys:
            rot = [0.0, 0.0, 0.0]
            rot[channel] = amp * math.sin(2 * math.pi * (f - 1) / (frames - 1) + phase * (b + 1))
            pb.rotation_euler = rot
            pb.keyframe_insert("rotation_euler", frame=f)
    return arm.animation_data.action


# ---------------------------------------------------------------- assets


def _meta(name, expect, animations, frames, textured, motion, **extra) -> dict:
    return dict(name=name, file=f"{name}.glb", expect=expect, animations=animations, frames=frames,
                textured=textured, motion=motion, **extra)


def _asset_creature_textured(rng):
    _reset_scene(60)
    radii = 0.18 + 0.08 * np.sin(np.linspace(0, np.pi, 25)) ** 0.5  # fat middle, thin ends
    arm = _creature("Worm", _checker_material("WormSkin", rng), length=2.5, radii=radii, n_bones=5, axis=(1, 0, 0))
    _bone_wave(arm, "Slither", 60, amp=float(rng.uniform(0.12, 0.16)), phase=float(rng.uniform(0.8, 1.2)), channel=2)
    return _meta("creature_textured", "accept", ["Slither"], [60], True, "armature")


def _asset_creature_plain(rng):
    _reset_scene(48)
    radii = np.linspace(0.22, 0.05, 21)  # tapering tentacle standing on the ground
    mat = _flat_material("TentacleSkin", rng.uniform(0.2, 0.9, 3))
    arm = _creature("Tentacle", mat, length=2.0, radii=radii, n_bones=4, axis=(0, 0, 1))
    _bone_wave(arm, "Sway", 48, amp=float(rng.uniform(0.12, 0.16)), phase=float(rng.uniform(0.5, 0.9)), channel=0)
    return _meta("creature_plain", "accept", ["Sway"], [48], False, "armature")


def _asset_blob_shapekeys(rng):
    _reset_scene(40)
    # Icosphere, not UV sphere: the 5.0 UV sphere primitive's face order varies run to run (non-reproducible GLB).
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=4, radius=0.6)
    blob = bpy.context.active_object
    blob.data.shade_smooth()  # smooth normals let the exporter weld vertices (flat: 3 per triangle)
    blob.data.materials.append(_flat_material("BlobSkin", rng.uniform(0.2, 0.9, 3)))
    blob.shape_key_add(name="Basis")
    co = np.empty(len(blob.data.vertices) * 3)
    blob.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    bulge = co * (1.0 + 0.45 * np.clip(co[:, 0:1] / 0.6, 0, None) ** 2)  # one-sided bulge towards +X
    squash = co * np.array([1.25, 1.25, 0.55])
    for key_name, target in (("Bulge", bulge), ("Squash", squash)):
        blob.shape_key_add(name=key_name, from_mix=False).data.foreach_set("co", target.ravel())
    key = blob.data.shape_keys
    _new_action(key, "Morph")
    phase = float(rng.uniform(0, np.pi))
    for f in sorted(set(range(1, 41, 3)) | {40}):
        s = 2 * math.pi * (f - 1) / 39
        key.key_blocks["Bulge"].value = 0.5 + 0.5 * math.sin(s)
        key.key_blocks["Squash"].value = 0.5 + 0.5 * math.sin(s + phase)
        for kb in ("Bulge", "Squash"):
            key.key_blocks[kb].keyframe_insert("value", frame=f)
    return _meta("blob_shapekeys", "accept", ["Morph"], [40], False, "shape_keys")


def _bmesh_object(name: str, build) -> bpy.types.Object:
    """Mesh object whose geometry ``build(bm)`` creates with bmesh primitive ops."""
    bm = bmesh.new()
    build(bm)
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    return _link_new_object(name, me)


def _arrow_geometry(bm) -> None:
    # Box + cone pointing +X + fin on +Y: no rotational or mirror symmetry, so its heading is unambiguous.
    bmesh.ops.create_cube(bm, size=1.0)
    bmesh.ops.create_cone(bm, cap_ends=True, segments=16, radius1=0.4, radius2=0.0, depth=0.9,
                          matrix=Matrix.Translation((0.95, 0, 0)) @ Matrix.Rotation(math.pi / 2, 4, "Y"))
    bmesh.ops.create_cube(bm, size=0.3, matrix=Matrix.Translation((-0.2, 0.65, 0.2)))


def _asset_rigid_spinner(rng):
    _reset_scene(61)
    obj = _bmesh_object("Spinner", _arrow_geometry)
    obj.data.materials.append(_flat_material("SpinnerPaint", rng.uniform(0.2, 0.9, 3)))
    _new_action(obj, "Spin")
    _key_object(obj, "rotation_euler", [(1, (0.0, 0.0, 0.0)), (61, (0.0, 0.0, math.pi))])
    _set_interpolation(obj, "LINEAR")  # angle(f) = 3 * (f - 1) degrees exactly
    return _meta("rigid_spinner", "accept", ["Spin"], [61], False, "rigid",
                 rotation_axis="z", degrees_per_frame=3.0, first_frame=1)


def _asset_multi_anim(rng):
    _reset_scene(50)
    radii = np.full(21, 0.2)
    # Elliptic cross-section so the Twist action visibly turns the body, not just spins a circle in place.
    arm = _creature("Snake", _checker_material("SnakeSkin", rng), length=2.2, radii=radii, n_bones=4,
                          axis=(1, 0, 0), ellipse=0.5)
    specs = [("Wave", 40, 2), ("Nod", 36, 0), ("Twist", 50, 1)]  # euler channel: Z bend, X bend, Y roll
    ad = arm.animation_data_create()
    for name, frames, channel in specs:
        action = _bone_wave(arm, name, frames, amp=float(rng.uniform(0.12, 0.16)), phase=float(rng.uniform(0.4, 1.0)),
                            channel=channel)
        # One NLA track per action, none left active: ACTIONS mode exports each as its own glTF animation.
        track = ad.nla_tracks.new()
        track.name = name
        track.strips.new(name, 1, action)
        ad.action = None
    for pb in arm.pose.bones:
        pb.rotation_euler = (0.0, 0.0, 0.0)
    return _meta("multi_anim", "accept", [s[0] for s in specs], [s[1] for s in specs], True, "armature")


def _asset_static_statue(rng):
    _reset_scene(40)
    bpy.ops.mesh.primitive_monkey_add(size=1.0)
    statue = bpy.context.active_object
    statue.data.shade_smooth()
    statue.data.materials.append(_flat_material("Stone", rng.uniform(0.5, 0.8, 3)))
    _new_action(statue, "Idle")
    # Constant keys: the exporter writes them as a 2-key animation over frames 1..40 that moves nothing.
    _key_object(statue, "rotation_euler", [(1, (0.0, 0.0, 0.0)), (40, (0.0, 0.0, 0.0))])
    _key_object(statue, "location", [(1, (0.0, 0.0, 0.0)), (40, (0.0, 0.0, 0.0))])
    return _meta("static_statue", "static", ["Idle"], [40], False, "none")


def _asset_runaway(rng):
    _reset_scene(40)
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=2, radius=0.25)
    ball = bpy.context.active_object
    ball.data.materials.append(_flat_material("Ball", rng.uniform(0.2, 0.9, 3)))
    _new_action(ball, "Flee")
    _key_object(ball, "location", [(1, (0.0, 0.0, 0.0)), (40, (3.0, 0.0, 0.0))])  # 6x its 0.5 size along X
    _set_interpolation(ball, "LINEAR")
    return _meta("runaway", "bounds", ["Flee"], [40], False, "rigid", travel=3.0, object_size=0.5)


def _asset_scene_spread(rng, n_objects: int = 40, n_spinning: int = 6, extent: float = 40.0):
    _reset_scene(48)
    mats = [_flat_material(f"Prop{k}", rng.uniform(0.2, 0.9, 3)) for k in range(4)]
    xy = rng.uniform(-extent / 2, extent / 2, size=(n_objects, 2))
    sizes = rng.uniform(0.3, 1.0, size=n_objects)
    spin_action, spin_slot = None, None
    for k in range(n_objects):
        size = float(sizes[k])
        loc = (float(xy[k, 0]), float(xy[k, 1]), size * 0.25)  # flat props resting on the ground
        if k % 2:
            bpy.ops.mesh.primitive_cylinder_add(vertices=12, radius=size / 2, depth=size / 2, location=loc)
        else:
            bpy.ops.mesh.primitive_cube_add(size=size, location=loc, scale=(1.0, 1.0, 0.5))
        obj = bpy.context.active_object
        obj.name = f"Prop{k:02d}"
        obj.data.materials.append(mats[k % len(mats)])
        if k >= n_spinning:
            continue
        if spin_action is None:  # first spinner creates the action, the others reuse the same slot
            spin_action = _new_action(obj, "Spin")
            _key_object(obj, "rotation_euler", [(1, (0.0, 0.0, 0.0)), (48, (0.0, 0.0, 2 * math.pi))])
            _set_interpolation(obj, "LINEAR")
            spin_slot = obj.animation_data.action_slot
        else:
            ad = obj.animation_data_create()
            ad.action, ad.action_slot = spin_action, spin_slot
    return _meta("scene_spread", "scene_like", ["Spin"], [48], False, "rigid", objects=n_objects, extent=extent)


def _asset_kitbash_walker(rng, pitch: float = 0.1):
    """A character kitbashed from hundreds of separate rigid cubes (torso, two legs, two arms, a
    little apart so no two share a vertex), each skinned whole to one bone, walking in place: the
    legs and arms swing, the body bobs. Many small parts, none dominant, all packed and moving
    together: a character, not a scene."""
    _reset_scene(48)
    blocks = {  # bone: (cubes along x, y, z), the block's lowest corner (in pitches), its pivot
        "Body": ((6, 4, 8), (-3, -2, 9), (0.0, 0.0, 1.3)),
        "LegL": ((3, 3, 8), (-3, -1.5, 0), (-0.15, 0.0, 0.85)),
        "LegR": ((3, 3, 8), (0.5, -1.5, 0), (0.2, 0.0, 0.85)),
        "ArmL": ((2, 2, 7), (-5.5, -1, 9.5), (-0.45, 0.0, 1.65)),
        "ArmR": ((2, 2, 7), (3.5, -1, 9.5), (0.45, 0.0, 1.65)),
    }
    bm = bmesh.new()
    owner = []  # bone of each vertex
    for bone, ((nx, ny, nz), corner, _) in blocks.items():
        for i, j, k in np.ndindex(nx, ny, nz):
            centre = (np.asarray(corner) + (i + 0.5, j + 0.5, k + 0.5)) * pitch
            bmesh.ops.create_cube(bm, size=0.92 * pitch, matrix=Matrix.Translation(tuple(centre)))
            owner += [bone] * 8
    me = bpy.data.meshes.new("Walker")
    bm.to_mesh(me)
    bm.free()
    me.materials.append(_flat_material("WalkerPlates", rng.uniform(0.3, 0.8, 3)))
    body = _link_new_object("Walker", me)
    arm = _link_new_object("WalkerRig", bpy.data.armatures.new("WalkerRig"))
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for bone, (_, _, pivot) in blocks.items():
        eb = arm.data.edit_bones.new(bone)
        eb.head, eb.tail = pivot, (pivot[0], pivot[1], pivot[2] + 0.2)
    for bone in ("LegL", "LegR", "ArmL", "ArmR"):
        arm.data.edit_bones[bone].parent = arm.data.edit_bones["Body"]
    bpy.ops.object.mode_set(mode="OBJECT")
    body.parent = arm
    body.modifiers.new("Armature", "ARMATURE").object = arm
    owner = np.asarray(owner)
    for bone in blocks:
        body.vertex_groups.new(name=bone).add(np.flatnonzero(owner == bone).tolist(), 1.0, "REPLACE")
    _new_action(arm, "Walk")
    swing = float(rng.uniform(0.35, 0.45))
    for pb in arm.pose.bones:
        pb.rotation_mode = "XYZ"
    for f in range(1, 49, 4):
        phase = 2 * math.pi * (f - 1) / 48
        for bone, sign in (("LegL", 1), ("LegR", -1), ("ArmL", -1), ("ArmR", 1)):
            arm.pose.bones[bone].rotation_euler = (sign * swing * math.sin(phase), 0.0, 0.0)
            arm.pose.bones[bone].keyframe_insert("rotation_euler", frame=f)
        arm.pose.bones["Body"].location = (0.0, 0.0, 0.03 * abs(math.sin(phase)))
        arm.pose.bones["Body"].keyframe_insert("location", frame=f)
    return _meta("kitbash_walker", "accept", ["Walk"], [48], False, "armature",
                 pieces=int(len(owner) // 8))


def _asset_ground_scene(rng, n_props: int = 30, extent: float = 12.0):
    """A ground plane with props resting on it, spread out; one of them rolls across. The ground is
    the largest part by far, so the largest part's size alone took it for one object."""
    _reset_scene(48)
    bpy.ops.mesh.primitive_plane_add(size=extent)
    ground = bpy.context.active_object
    ground.name = "Ground"
    ground.data.materials.append(_flat_material("Grass", (0.3, 0.5, 0.25)))
    mats = [_flat_material(f"Crate{k}", rng.uniform(0.2, 0.9, 3)) for k in range(3)]
    placed = []
    while len(placed) < n_props:  # props at least 1.2 apart: spread, not stacked
        xy = rng.uniform(-extent / 2 + 0.6, extent / 2 - 0.6, 2)
        if all(np.linalg.norm(xy - q) > 1.2 for q in placed):
            placed.append(xy)
    for k, (x, y) in enumerate(placed):
        size = float(rng.uniform(0.3, 0.6))
        bpy.ops.mesh.primitive_cube_add(size=size, location=(float(x), float(y), size / 2))
        obj = bpy.context.active_object
        obj.name = f"Crate{k:02d}"
        obj.data.materials.append(mats[k % len(mats)])
        if k == 0:  # the one prop that moves: rolls 2 units along x
            _new_action(obj, "Roll")
            _key_object(obj, "location", [(1, (float(x), float(y), size / 2)), (48, (float(x) + 2.0, float(y), size / 2))])
            _set_interpolation(obj, "LINEAR")
    return _meta("ground_scene", "scene_like", ["Roll"], [48], False, "rigid", props=n_props, extent=extent)


def _asset_late_mover(rng, idle: int = 100, frames: int = 150):
    """A blob that rests for its first `idle` frames, then swells and squashes: a random 30-keyframe
    window (spanning about 60 frames) often sees only the rest, a window placed by motion never."""
    _reset_scene(frames)
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=0.5)
    blob = bpy.context.active_object
    blob.data.shade_smooth()
    blob.data.materials.append(_flat_material("LateSkin", rng.uniform(0.2, 0.9, 3)))
    blob.shape_key_add(name="Basis")
    co = np.empty(len(blob.data.vertices) * 3)
    blob.data.vertices.foreach_get("co", co)
    blob.shape_key_add(name="Squash", from_mix=False).data.foreach_set(
        "co", (co.reshape(-1, 3) * np.array([1.3, 1.3, 0.6])).ravel())
    key = blob.data.shape_keys
    _new_action(key, "WakeUp")
    sq = key.key_blocks["Squash"]
    for f, value in [(1, 0.0), (idle, 0.0)] + [(f, 0.5 - 0.5 * math.cos(2 * math.pi * (f - idle) / 25))
                                                 for f in range(idle + 5, frames + 1, 5)]:
        sq.value = value
        sq.keyframe_insert("value", frame=f)
    return _meta("late_mover", "accept", ["WakeUp"], [frames], False, "shape_keys", idle_frames=idle)


def _asset_too_short(rng):
    _reset_scene(5)
    bpy.ops.mesh.primitive_cube_add(size=0.5)
    cube = bpy.context.active_object
    cube.data.materials.append(_flat_material("Blip", rng.uniform(0.2, 0.9, 3)))
    _new_action(cube, "Blip")
    _key_object(cube, "location", [(1, (0.0, 0.0, 0.0)), (5, (0.0, 0.0, 0.3))])
    return _meta("too_short", "too_short", ["Blip"], [5], False, "rigid")


# Built in this order; truncated copies creature_plain's bytes so it must come after it.
_BUILDERS = [
    ("creature_textured", _asset_creature_textured),
    ("creature_plain", _asset_creature_plain),
    ("blob_shapekeys", _asset_blob_shapekeys),
    ("rigid_spinner", _asset_rigid_spinner),
    ("multi_anim", _asset_multi_anim),
    ("static_statue", _asset_static_statue),
    ("runaway", _asset_runaway),
    ("scene_spread", _asset_scene_spread),
    ("kitbash_walker", _asset_kitbash_walker),
    ("ground_scene", _asset_ground_scene),
    ("late_mover", _asset_late_mover),
    ("too_short", _asset_too_short),
]


def write_demo_assets(out_dir, seed: int = 0) -> list[dict]:
    """Write every demo GLB plus ``demo_assets.json`` into ``out_dir``; returns the JSON's list of dicts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assets = []
    for name, build in _BUILDERS:
        # One stream per (seed, asset name): adding or reordering assets leaves the others' content unchanged.
        meta = build(np.random.default_rng([seed, zlib.crc32(name.encode())]))
        assert meta["name"] == name
        _export_glb(out / meta["file"])
        assets.append(meta)

    data = (out / "creature_plain.glb").read_bytes()
    (out / "truncated.glb").write_bytes(data[: int(len(data) * 0.4)])
    (out / "not_a_glb.glb").write_text("this is not a glTF binary\n" * 20)
    for name in ("truncated", "not_a_glb"):
        assets.append(_meta(name, "unreadable", [], [], None, "none"))

    (out / "demo_assets.json").write_text(json.dumps(assets, indent=2) + "\n")
    bpy.ops.wm.read_factory_settings(use_empty=True)  # leave the caller a clean scene
    return assets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    assets = write_demo_assets(args.out, args.seed)
    print(f"wrote {len(assets)} assets to {args.out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
