"""Evidence for the textured / textureless label: curation owns the rule; this only measures.

Two levels, since they can disagree (a file may embed a texture and UVs that its material does not
bind, which then renders in the flat base colour):
- scene: which materials of the counted meshes feed an image texture into base colour (bpy node
  graph after import), their base colours and image statistics, UV layers, colour attributes;
- file: the glTF's own images, textures and base-colour texture bindings, with statistics of the
  embedded images (read from the GLB, no bpy).
"""
from __future__ import annotations

import io
import json
import os
import struct

import numpy as np
from PIL import Image

_MAX_PIXELS = 256 * 256  # image statistics on a strided subsample: enough for mean/std


def _upstream_images(node, seen=None) -> list:
    """Image-texture nodes anywhere upstream of `node` (through mix nodes, color ramps, groups' inputs)."""
    seen = set() if seen is None else seen
    if node.as_pointer() in seen:
        return []
    seen.add(node.as_pointer())
    found = [node] if node.type == "TEX_IMAGE" and node.image is not None else []
    for inp in node.inputs:
        for link in inp.links:
            found += _upstream_images(link.from_node, seen)
    return found


def _image_stats(image) -> dict:
    w, h = image.size
    stats = {"name": image.name, "size": [int(w), int(h)]}
    if w * h == 0:
        stats["unreadable"] = True
        return stats
    px = np.empty(w * h * image.channels, dtype=np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(-1, image.channels)
    px = px[:: max(1, len(px) // _MAX_PIXELS), :3]
    stats["mean_rgb"] = [round(float(v), 4) for v in px.mean(0)]
    stats["std_rgb"] = [round(float(v), 4) for v in px.std(0)]
    return stats


def _base_color_socket(material):
    if not material.use_nodes or material.node_tree is None:
        return None
    for node in material.node_tree.nodes:
        if node.type == "BSDF_PRINCIPLED":
            return node.inputs["Base Color"]
    return None


def gather(objects) -> dict:
    materials = {}
    face_total, face_textured = 0, 0
    for obj in objects:
        me = obj.data
        mat_faces = np.zeros(max(1, len(obj.material_slots)), dtype=np.int64)
        if len(me.polygons):
            idx = np.empty(len(me.polygons), dtype=np.int32)
            me.polygons.foreach_get("material_index", idx)
            mat_faces = np.bincount(np.clip(idx, 0, len(mat_faces) - 1), minlength=len(mat_faces))
        face_total += len(me.polygons)
        for i, slot in enumerate(obj.material_slots):
            mat = slot.material
            if mat is None:
                continue
            info = materials.get(mat.name)
            if info is None:
                info = _material_info(mat)
                materials[mat.name] = info
            if info["image_texture"]:
                face_textured += int(mat_faces[i]) if i < len(mat_faces) else 0
    textured = sum(1 for m in materials.values() if m["image_texture"])
    return {"materials": materials, "n_materials": len(materials), "n_textured_materials": textured,
            "textured_face_fraction": round(face_textured / face_total, 4) if face_total else 0.0,
            "meshes_with_uv": sum(1 for o in objects if len(o.data.uv_layers) > 0),
            "has_color_attributes": any(len(o.data.color_attributes) > 0 for o in objects)}


def file_evidence(path: str, max_images: int = 4) -> dict:
    """Images, textures and base-colour bindings declared by a GLB, with embedded image statistics.
    Other formats declare theirs in ways only their importer reads: the scene's evidence stands alone."""
    if not path.lower().endswith((".glb", ".gltf")):
        return {"readable": False, "error": f"not glTF ({os.path.splitext(path)[1]}): scene evidence only"}
    try:
        gltf, binary = _read_glb(path)
    except (OSError, ValueError, struct.error) as exc:
        return {"readable": False, "error": str(exc)}
    mats = gltf.get("materials", [])
    bound = sum(1 for m in mats if "baseColorTexture" in m.get("pbrMetallicRoughness", {}))
    images = []
    for img in gltf.get("images", [])[:max_images]:
        stats = {"name": img.get("name", ""), "mime": img.get("mimeType", "")}
        view = gltf["bufferViews"][img["bufferView"]] if "bufferView" in img and binary else None
        if view is not None:
            start = view.get("byteOffset", 0)
            try:
                im = Image.open(io.BytesIO(binary[start:start + view["byteLength"]]))
                im.draft("RGB", (256, 256))  # JPEG decodes at reduced size; PNG ignores it
                px = np.asarray(im.convert("RGB").resize((128, 128)), dtype=np.float32) / 255.0
                stats.update(size=list(im.size), mean_rgb=[round(float(v), 4) for v in px.mean((0, 1))],
                             std_rgb=[round(float(v), 4) for v in px.std((0, 1))])
            except Exception as exc:  # undecodable embedded image: evidence, not a failure
                stats["error"] = str(exc)
        images.append(stats)
    return {"readable": True, "n_images": len(gltf.get("images", [])),
            "n_textures": len(gltf.get("textures", [])),
            "n_materials_with_base_color_texture": bound, "images": images}


def _read_glb(path: str) -> tuple[dict, bytes]:
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"glTF":  # a .gltf text file: JSON only, external images not read
        return json.loads(data), b""
    (json_len,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20:20 + json_len])
    binary = b""
    off = 20 + json_len
    if off + 8 <= len(data):
        (bin_len,) = struct.unpack_from("<I", data, off)
        binary = data[off + 8: off + 8 + bin_len]
    return gltf, binary


def _material_info(mat) -> dict:
    sock = _base_color_socket(mat)
    info = {"image_texture": False, "images": [], "base_color": None}
    if sock is None:
        info["base_color"] = [round(float(v), 4) for v in mat.diffuse_color]
        return info
    if sock.is_linked:
        images = _upstream_images(sock.links[0].from_node)
        info["images"] = [_image_stats(n.image) for n in images]
        info["image_texture"] = any(not s.get("unreadable") for s in info["images"])
    info["base_color"] = [round(float(v), 4) for v in sock.default_value]
    return info
