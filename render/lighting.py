"""A random environment light per clip from Blender's bundled studio HDRIs (bpy)."""
from __future__ import annotations

import math
import os

import bpy
import numpy as np


def hdri_dir() -> str:
    return os.path.join(bpy.utils.system_resource("DATAFILES"), "studiolights", "world")


def draw_light(light, rng: np.random.Generator) -> dict:
    """The clip's light: which HDRI, its rotation about the up axis and its strength."""
    return {"hdri": str(rng.choice(light.hdris)),
            "rotation_deg": float(rng.uniform(*light.rotation_deg)),
            "strength": float(rng.uniform(*light.strength))}


def apply_light(choice: dict) -> None:
    scene = bpy.context.scene
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.use_nodes = True
    nt = world.node_tree
    nt.nodes.clear()
    coord = nt.nodes.new("ShaderNodeTexCoord")
    mapping = nt.nodes.new("ShaderNodeMapping")
    env = nt.nodes.new("ShaderNodeTexEnvironment")
    bg = nt.nodes.new("ShaderNodeBackground")
    out = nt.nodes.new("ShaderNodeOutputWorld")
    env.image = bpy.data.images.load(os.path.join(hdri_dir(), choice["hdri"]), check_existing=True)
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, math.radians(choice["rotation_deg"]))
    bg.inputs["Strength"].default_value = choice["strength"]
    nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
    nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
    nt.links.new(env.outputs["Color"], bg.inputs["Color"])
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
