"""Load an asset into an empty Blender scene and switch between its animations (bpy).

Formats are what Blender's own importers read (`IMPORTERS`): glTF/GLB, FBX, OBJ (+MTL beside it; OBJ
has no animation, so such an asset ends as `no_animation`), USD, and `.blend` (opened with its
scripts off). Anything else, COLLADA included (Blender 5 removed its importer), raises
`UnsupportedFormat`: the asset is recorded as `unsupported_format`, not as a broken file.

In Blender 5 the glTF importer turns each glTF animation into one action with a slot per animated
datablock (armature object, shape-key blocks, rigid objects) and also stacks them as muted NLA
tracks. A clip is played by assigning that action, and its matching slot, to every animated
datablock, with NLA evaluation off, after restoring the rest state the import left, so one
animation's last pose never leaks into the next.
"""
from __future__ import annotations

import os

import bpy
import numpy as np

from render import formats


class UnreadableAsset(Exception):
    """The importer could not read the file."""


class UnsupportedFormat(Exception):
    """No importer of this Blender reads the file's format."""


def _open_blend(path: str) -> set:
    # the file replaces the empty scene; its scripts stay off (assets are untrusted input)
    return bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)


# extension -> (format name, importer call)
IMPORTERS = {
    ".glb": ("glTF", lambda p: bpy.ops.import_scene.gltf(filepath=p)),
    ".gltf": ("glTF", lambda p: bpy.ops.import_scene.gltf(filepath=p)),
    ".fbx": ("FBX", lambda p: bpy.ops.import_scene.fbx(filepath=p)),
    ".obj": ("OBJ", lambda p: bpy.ops.wm.obj_import(filepath=p)),
    **{ext: ("USD", lambda p: bpy.ops.wm.usd_import(filepath=p)) for ext in (".usd", ".usda", ".usdc", ".usdz")},
    ".blend": ("Blender", _open_blend),
}
assert tuple(IMPORTERS) == formats.IMPORTED, "render/formats.py lists what is imported here"


def set_frame(frame: float) -> None:
    """Go to a frame that may be fractional (sub-frame keyframes of short clips)."""
    whole = int(np.floor(frame))
    bpy.context.scene.frame_set(whole, subframe=float(frame - whole))


def reset_blender() -> None:
    # Auto-run scripts stay off before anything is loaded: assets are untrusted input.
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def import_asset(path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMPORTERS:
        why = "Blender 5 has no COLLADA importer" if ext == ".dae" else "no Blender importer for it"
        raise UnsupportedFormat(f"{path}: format {ext or '(no extension)'!r} not imported ({why}; "
                                f"read: {', '.join(formats.IMPORTED)})")
    name, importer = IMPORTERS[ext]
    try:
        result = importer(path)
    except Exception as exc:  # the importers raise RuntimeError with their own message
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise UnreadableAsset(f"{path}: {name} import failed: {lines[-1]}") from exc
    if "FINISHED" not in result:
        raise UnreadableAsset(f"{path}: {name} import returned {sorted(result)}")


def counted_meshes() -> list[bpy.types.Object]:
    """Visible, renderable meshes in a stable (name) order. The importer's bone-shape helper
    meshes sit in a hidden collection, so visible_get() leaves them out."""
    objs = [o for o in bpy.context.scene.objects
            if o.type == "MESH" and o.visible_get() and not o.hide_render]
    return sorted(objs, key=lambda o: o.name)


def animated_ids() -> list[bpy.types.ID]:
    ids: list[bpy.types.ID] = [o for o in bpy.data.objects if o.animation_data]
    ids += [k for k in bpy.data.shape_keys if k.animation_data]
    return ids


def animations() -> list[bpy.types.Action]:
    """The asset's animations, one action each, in Blender's stable (name) order: the clip's
    animation index is the position here."""
    return list(bpy.data.actions)


def action_frame_range(action: bpy.types.Action) -> tuple[int, int]:
    start, end = action.frame_range
    return int(round(start)), int(round(end))


class RestState:
    """Transforms, pose and shape-key values as imported, restored before each clip."""

    def __init__(self) -> None:
        self.objects = {o.name: o.matrix_basis.copy() for o in bpy.data.objects}
        self.bones = {}
        for o in bpy.data.objects:
            if o.type == "ARMATURE" and o.pose:
                for b in o.pose.bones:
                    self.bones[(o.name, b.name)] = (b.location.copy(), b.rotation_quaternion.copy(),
                                                    b.rotation_euler.copy(), b.scale.copy())
        self.keys = {(k.name, kb.name): kb.value for k in bpy.data.shape_keys for kb in k.key_blocks}

    def restore(self) -> None:
        for o in bpy.data.objects:
            if o.name in self.objects:
                o.matrix_basis = self.objects[o.name]
            if o.type == "ARMATURE" and o.pose:
                for b in o.pose.bones:
                    loc, quat, eul, scl = self.bones[(o.name, b.name)]
                    b.location, b.rotation_quaternion, b.rotation_euler, b.scale = loc, quat, eul, scl
        for k in bpy.data.shape_keys:
            for kb in k.key_blocks:
                kb.value = self.keys[(k.name, kb.name)]


def play(action: bpy.types.Action, rest: RestState) -> int:
    """Make `action` the only animation evaluated; returns how many datablocks it drives."""
    rest.restore()
    driven = 0
    for id_ in animated_ids():
        ad = id_.animation_data
        ad.use_nla = False
        ad.action = None
        slot = _slot_for(action, id_)
        if slot is not None:
            ad.action = action
            ad.action_slot = slot
            driven += 1
    return driven


def _slot_for(action: bpy.types.Action, id_: bpy.types.ID):
    ad = id_.animation_data
    id_type = "KEY" if isinstance(id_, bpy.types.Key) else "OBJECT"
    wanted = {ad.last_slot_identifier}
    if id_type == "OBJECT":
        wanted.add("OB" + id_.name)
    for slot in action.slots:
        if slot.target_id_type in (id_type, "UNSPECIFIED") and slot.identifier in wanted:
            return slot
    return None
