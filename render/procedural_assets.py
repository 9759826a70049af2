"""A procedural family of animated assets for learning, not for exercising the filters: every variant
draws its body plan, proportions, material and motion (speed, direction, phase, amplitude, gait) from
its own seed, so a held-out variant's motion is not a training variant's.

Body plans:
- serpentine: a tube skinned to a chain of bones, a travelling wave on a random bend axis;
- legged: a body with 2-6 legs, each a bone, swinging in a gait (trot, pace, bound or wave) with a
  bobbing body and a turning head;
- blob: an icosphere with shape keys (a bulge along a random direction, a squash along a random axis,
  a twist), each played at its own rate and phase;
- machine: an articulated arm, a base and 1-2 rigid links, each joint turning about its own axis at
  its own rate.

Rigid parts (legs, links) are boxes of one mesh, each skinned whole to its bone, so every variant is
one object with one action: one clip.

Run as ``python -m render.procedural_assets --out DIR --variants N [--seed S]`` inside a process that
has ``bpy``. Writes ``DIR/proc_<plan>_<i>.glb`` plus ``DIR/procedural_assets.json`` (one entry per
variant: its plan and the drawn parameters). Uses the demo assets' helpers (same package).
"""
from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from pathlib import Path

import numpy as np

from render.demo_assets import (_checker_material, _creature, _export_glb, _flat_material, _link_new_object,
                                _meta, _new_action, _reset_scene)

import bpy  # isort: skip
import bmesh
from mathutils import Matrix

PLANS = ("serpentine", "legged", "blob", "machine")


def _material(name: str, rng: np.random.Generator):
    return _checker_material(name, rng) if rng.random() < 0.5 else _flat_material(name, rng.uniform(0.15, 0.9, 3))


def _frames(rng) -> int:
    return int(rng.integers(60, 91))


def _cycles(rng) -> float:
    """Periods over the animation: slow to fast, either direction."""
    return float(rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0]))


def _serpentine(rng, name):
    frames = _frames(rng)
    _reset_scene(frames)
    n_bones = int(rng.integers(3, 7))
    length = float(rng.uniform(1.6, 2.8))
    rings = 4 * n_bones + 1
    profile = rng.choice(["taper", "fat", "even"])
    s = np.linspace(0, 1, rings)
    radii = {"taper": 0.24 - 0.17 * s, "fat": 0.12 + 0.12 * np.sin(np.pi * s) ** 0.5,
             "even": np.full(rings, 0.17)}[profile] * float(rng.uniform(0.8, 1.2))
    axis = (1, 0, 0) if rng.random() < 0.6 else (0, 0, 1)
    arm = _creature(name, _material(f"{name}_skin", rng), length=length, radii=radii, n_bones=n_bones, axis=axis,
                    ellipse=float(rng.uniform(0.5, 1.0)))
    channel = int(rng.choice([0, 1, 2] if axis[0] else [0, 1]))
    amp, phase, cycles = float(rng.uniform(0.1, 0.3)) * 4 / n_bones, float(rng.uniform(0.3, 1.5)), _cycles(rng)
    _new_action(arm, "Move")
    for b, pb in enumerate(arm.pose.bones):
        for f in sorted(set(range(1, frames + 1, 3)) | {frames}):
            rot = [0.0, 0.0, 0.0]
            rot[channel] = amp * math.sin(2 * math.pi * cycles * (f - 1) / (frames - 1) + phase * (b + 1))
            pb.rotation_euler = rot
            pb.keyframe_insert("rotation_euler", frame=f)
    return frames, dict(bones=n_bones, length=length, profile=str(profile), channel=channel, amplitude=amp,
                        phase=phase, cycles=cycles)


def _rigid_parts(name: str, parts: dict, parents: dict, rng) -> bpy.types.Object:
    """One mesh of boxes (part: ((centre), (size), (pivot))), each box skinned whole to its own bone at
    its pivot, bones parented as `parents` says: the rigid parts of one character or machine, one
    action for all of them. Returns the armature."""
    bm = bmesh.new()
    for centre, size, _ in parts.values():
        bmesh.ops.create_cube(bm, size=1.0, matrix=Matrix.Translation(centre) @ Matrix.Diagonal((*size, 1.0)))
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=1, use_grid_fill=True)
    me = bpy.data.meshes.new(f"{name}_body")
    bm.to_mesh(me)
    bm.free()
    me.materials.append(_material(f"{name}_skin", rng))
    body = _link_new_object(f"{name}_body", me)
    arm = _link_new_object(name, bpy.data.armatures.new(name))
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for part, (_, _, pivot) in parts.items():
        eb = arm.data.edit_bones.new(part)
        eb.head, eb.tail = pivot, (pivot[0], pivot[1], pivot[2] + 0.15)
    for part, parent in parents.items():
        arm.data.edit_bones[part].parent = arm.data.edit_bones[parent]
    bpy.ops.object.mode_set(mode="OBJECT")
    body.parent = arm
    body.modifiers.new("Armature", "ARMATURE").object = arm
    co = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    # each vertex to the first box that holds it (the boxes do not overlap)
    inside = np.stack([np.all(np.abs(co - np.asarray(c)) <= np.asarray(sz) / 2 + 1e-4, axis=1)
                       for c, sz, _ in parts.values()], axis=1)
    who = inside.argmax(axis=1)
    for k, part in enumerate(parts):
        body.vertex_groups.new(name=part).add(np.flatnonzero(who == k).tolist(), 1.0, "REPLACE")
    for pb in arm.pose.bones:
        pb.rotation_mode = "XYZ"
    return arm


def _legged(rng, name):
    frames = _frames(rng)
    _reset_scene(frames)
    pairs = int(rng.integers(1, 4))
    body_len, body_w, leg_len = float(rng.uniform(0.8, 1.6)), float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.4, 0.9))
    body_centre = (0.0, 0.0, leg_len + 0.15)
    parts = {"Body": (body_centre, (body_len, body_w, 0.3), body_centre)}
    xs = np.linspace(-body_len / 2 + 0.1, body_len / 2 - 0.1, pairs) if pairs > 1 else np.array([0.0])
    for i, x in enumerate(xs):
        for side, y in (("L", body_w / 2 + 0.06), ("R", -body_w / 2 - 0.06)):
            parts[f"Leg{i}{side}"] = ((float(x), y, leg_len / 2), (0.1, 0.1, leg_len), (float(x), y, leg_len))
    parts["Head"] = ((body_len / 2 + 0.2, 0.0, leg_len + 0.3), (0.3, 0.25, 0.25), (body_len / 2, 0.0, leg_len + 0.2))
    arm = _rigid_parts(name, parts, {p: "Body" for p in parts if p != "Body"}, rng)
    gait = str(rng.choice(["trot", "pace", "bound", "wave"]))
    swing, cycles, bob = float(rng.uniform(0.25, 0.6)), _cycles(rng), float(rng.uniform(0.0, 0.06))
    head_turn, head_axis = float(rng.uniform(0.0, 0.5)), int(rng.integers(0, 3))
    _new_action(arm, "Move")
    for f in sorted(set(range(1, frames + 1, 3)) | {frames}):
        s = 2 * math.pi * cycles * (f - 1) / (frames - 1)
        for i in range(len(xs)):
            for side in ("L", "R"):
                right = side == "R"
                offset = {"trot": math.pi * ((i + right) % 2), "pace": math.pi * right,
                          "bound": math.pi * (i % 2), "wave": i * math.pi / 2 + math.pi * right}[gait]
                pb = arm.pose.bones[f"Leg{i}{side}"]  # about the bone's X: a swing (its Y runs along the leg)
                pb.rotation_euler = (swing * math.sin(s + offset), 0.0, 0.0)
                pb.keyframe_insert("rotation_euler", frame=f)
        arm.pose.bones["Body"].location = (0.0, 0.0, bob * abs(math.sin(s)))
        arm.pose.bones["Body"].keyframe_insert("location", frame=f)
        rot = [0.0, 0.0, 0.0]
        rot[head_axis] = head_turn * math.sin(s / 2)
        arm.pose.bones["Head"].rotation_euler = rot
        arm.pose.bones["Head"].keyframe_insert("rotation_euler", frame=f)
    return frames, dict(leg_pairs=pairs, body_length=body_len, leg_length=leg_len, gait=gait, swing=swing,
                        cycles=cycles, bob=bob, head_turn=head_turn)


def _blob(rng, name):
    frames = _frames(rng)
    _reset_scene(frames)
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=float(rng.uniform(0.4, 0.7)))
    blob = bpy.context.active_object
    blob.name = name
    blob.data.shade_smooth()
    blob.data.materials.append(_material(f"{name}_skin", rng))
    blob.shape_key_add(name="Basis")
    co = np.empty(len(blob.data.vertices) * 3)
    blob.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    r = np.linalg.norm(co, axis=1, keepdims=True).max()
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    bulge = co + float(rng.uniform(0.2, 0.5)) * d * np.clip(co @ d / r, 0, None)[:, None] ** 2 * r
    axis = int(rng.integers(0, 3))
    scale = np.full(3, float(rng.uniform(1.1, 1.3)))
    scale[axis] = float(rng.uniform(0.5, 0.8))
    angle = float(rng.uniform(0.3, 0.9)) * co[:, 2:3] / r
    twist = np.concatenate([co[:, :1] * np.cos(angle) - co[:, 1:2] * np.sin(angle),
                            co[:, :1] * np.sin(angle) + co[:, 1:2] * np.cos(angle), co[:, 2:]], axis=1)
    keys = {"Bulge": bulge, "Squash": co * scale, "Twist": twist}
    for key_name, target in keys.items():
        blob.shape_key_add(name=key_name, from_mix=False).data.foreach_set("co", target.ravel())
    key = blob.data.shape_keys
    _new_action(key, "Morph")
    rates = {k: _cycles(rng) for k in keys}
    phases = {k: float(rng.uniform(0, 2 * np.pi)) for k in keys}
    for f in sorted(set(range(1, frames + 1, 3)) | {frames}):
        s = 2 * math.pi * (f - 1) / (frames - 1)
        for k in keys:
            key.key_blocks[k].value = 0.5 + 0.5 * math.sin(rates[k] * s + phases[k])
            key.key_blocks[k].keyframe_insert("value", frame=f)
    return frames, dict(bulge_direction=d.tolist(), squash_axis=axis, rates=rates, phases=phases)


def _machine(rng, name):
    """A base and a chain of 1-2 links stacked on it, each joint at the bottom of its link (bends kept
    small: a bent arm must stay in the camera volume that its first frame fills)."""
    frames = _frames(rng)
    _reset_scene(frames)
    links = int(rng.integers(2, 4))
    parts, parents, joints, z = {}, {}, [], 0.0
    for i in range(links):
        length = float(rng.uniform(0.4, 0.8)) if i else 0.25
        width = float(rng.uniform(0.15, 0.35)) if i else float(rng.uniform(0.5, 0.8))
        parts[f"Link{i}"] = ((0.0, 0.0, z + length / 2), (width, width * 0.8, length), (0.0, 0.0, z))
        if i:
            parents[f"Link{i}"] = f"Link{i - 1}"
        # bone axes: Y runs along the bone (here the vertical), X and Z bend it; the base turns about Y
        axis = int(rng.choice([0, 2])) if i else 1
        amp = float(rng.uniform(0.2, 0.5)) if i else float(rng.uniform(0.5, 3.0))
        joints.append(dict(axis=axis, amplitude=amp, cycles=_cycles(rng), phase=float(rng.uniform(0, 2 * np.pi)),
                           length=length))
        z += length + 0.02  # a small gap: each link a separate box
    arm = _rigid_parts(name, parts, parents, rng)
    _new_action(arm, "Move")
    for f in sorted(set(range(1, frames + 1, 3)) | {frames}):
        for i, j in enumerate(joints):
            rot = [0.0, 0.0, 0.0]
            rot[j["axis"]] = j["amplitude"] * math.sin(2 * math.pi * j["cycles"] * (f - 1) / (frames - 1) + j["phase"])
            pb = arm.pose.bones[f"Link{i}"]
            pb.rotation_euler = rot
            pb.keyframe_insert("rotation_euler", frame=f)
    return frames, dict(links=joints)


_PLAN_BUILDERS = {"serpentine": _serpentine, "legged": _legged, "blob": _blob, "machine": _machine}


def variant_name(plan: str, index: int) -> str:
    return f"proc_{plan}_{index:04d}"


def write_procedural_assets(out_dir, variants: int, seed: int = 0) -> list[dict]:
    """Write `variants` GLBs, the body plans in turn, plus ``procedural_assets.json``; returns its entries.
    Variant i depends only on (seed, i): asking for more variants keeps the first ones."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assets = []
    for i in range(variants):
        plan = PLANS[i % len(PLANS)]
        name = variant_name(plan, i)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        frames, params = _PLAN_BUILDERS[plan](rng, name)
        _export_glb(out / f"{name}.glb")
        assets.append(_meta(name, "accept", ["Move"], [frames], None, plan, plan=plan, params=params))
    (out / "procedural_assets.json").write_text(json.dumps(assets, indent=2) + "\n")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return assets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    assets = write_procedural_assets(args.out, args.variants, args.seed)
    print(f"wrote {len(assets)} procedural assets to {args.out} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
