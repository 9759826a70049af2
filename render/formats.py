"""Which asset files the pipeline takes, without importing bpy (sources and the launcher need it too).

`IMPORTED` are the extensions `render.scene` has an importer for; `NOT_IMPORTED` are 3D formats that
sources hold but this Blender cannot turn into an animated scene: a source still lists them, so each
ends as a recorded `unsupported_format` rather than vanishing from the audit.
"""
IMPORTED = (".glb", ".gltf", ".fbx", ".obj", ".usd", ".usda", ".usdc", ".usdz", ".blend")
# COLLADA: Blender 5 removed its importer; the rest have none in Blender or carry no rig or keys
NOT_IMPORTED = (".dae", ".abc", ".3ds", ".max", ".ma", ".mb", ".c4d", ".lwo", ".x3d", ".ply", ".stl")
ASSET_FILES = IMPORTED + NOT_IMPORTED


def is_asset_file(name: str) -> bool:
    return name.lower().endswith(ASSET_FILES)
