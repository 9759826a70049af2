"""A mesh asset as the driver sees it, and the animated GLB it writes.

Reading: every triangle primitive of a GLB (an OBJ is converted to GLB by trimesh first, materials
and textures kept), its vertices in world space at rest (node transforms applied; a skin is dropped,
so the bind pose is the rest pose), in the glTF frame (Y up). Writing: the same document with one
morph target per generated keyframe on every primitive (POSITION offsets in the primitive's own
space) and one animation that plays them in order (weight 1 on keyframe k at time k / fps, linear
interpolation); the input's own animations, skins and morph targets are replaced, materials and
textures stay. Or one static GLB per keyframe (`write_frames`: `mesh_00.glb`, `mesh_01.glb`, ..., the
layout ActionBench reads): the same document with every primitive's positions (and normals) set to
that keyframe's, in place, and no animation, skin or morph target.

Written with pygltflib: no exporter writes morph-target animation onto an existing document while
leaving the rest of it untouched.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pygltflib as gl

COMPONENTS = {gl.UNSIGNED_BYTE: np.uint8, gl.UNSIGNED_SHORT: np.uint16, gl.UNSIGNED_INT: np.uint32,
              gl.FLOAT: np.float32, gl.BYTE: np.int8, gl.SHORT: np.int16}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


@dataclass
class Primitive:
    node: int
    mesh: int
    index: int
    world: np.ndarray        # 4x4 node world matrix at rest
    positions: np.ndarray    # (n, 3) float32, the primitive's own space
    triangles: np.ndarray    # (m, 3) int64, indices into positions


class GltfAsset:
    def __init__(self, path: str):
        self.path = path
        if path.lower().endswith(".obj"):
            import trimesh
            scene = trimesh.load(path, force="scene")
            self.doc = gl.GLTF2.load_from_bytes(scene.export(file_type="glb"))
        else:
            self.doc = gl.GLTF2().load(path)
        if self.doc.buffers and self.doc.buffers[0].uri:
            self.doc.convert_buffers(gl.BufferFormat.BINARYBLOB)  # .gltf with external buffers
        self._blob = bytearray(self.doc.binary_blob() or b"")
        self.primitives = self._primitives()
        if not self.primitives:
            raise ValueError(f"{path}: no triangle mesh to drive")

    # -- reading ---------------------------------------------------------------------------------
    def _accessor(self, index: int) -> np.ndarray:
        acc = self.doc.accessors[index]
        if acc.sparse is not None:
            raise ValueError(f"{self.path}: sparse accessor {index} is not supported")
        view = self.doc.bufferViews[acc.bufferView]
        dtype = np.dtype(COMPONENTS[acc.componentType])
        width = WIDTH[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        stride = view.byteStride or dtype.itemsize * width
        raw = np.frombuffer(bytes(self._blob[start:start + stride * (acc.count - 1) + dtype.itemsize * width]),
                            dtype=np.uint8)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(acc.count, dtype.itemsize * width), strides=(stride, 1))
        return np.ascontiguousarray(rows).view(dtype).reshape(acc.count, width)

    def _world_matrices(self) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}

        def local(node) -> np.ndarray:
            if node.matrix:
                return np.array(node.matrix, dtype=np.float64).reshape(4, 4).T  # column-major in glTF
            m = np.eye(4)
            if node.scale:
                m = np.diag([*node.scale, 1.0]) @ m
            if node.rotation:
                x, y, z, w = node.rotation
                r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                              [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                              [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
                rot = np.eye(4)
                rot[:3, :3] = r
                m = rot @ m
            if node.translation:
                tr = np.eye(4)
                tr[:3, 3] = node.translation
                m = tr @ m
            return m

        def visit(i: int, parent: np.ndarray) -> None:
            out[i] = parent @ local(self.doc.nodes[i])
            for c in self.doc.nodes[i].children or []:
                visit(c, out[i])

        scene = self.doc.scenes[self.doc.scene or 0] if self.doc.scenes else None
        for root in (scene.nodes if scene else range(len(self.doc.nodes))):
            visit(root, np.eye(4))
        return out

    def _primitives(self) -> list[Primitive]:
        prims, seen = [], {}
        for node_i, world in self._world_matrices().items():
            mesh_i = self.doc.nodes[node_i].mesh
            if mesh_i is None:
                continue
            if mesh_i in seen:
                raise ValueError(f"{self.path}: mesh {mesh_i} is instanced by nodes {seen[mesh_i]} and {node_i}: "
                                 "morph targets would move every instance alike; give each node its own mesh")
            seen[mesh_i] = node_i
            for p_i, prim in enumerate(self.doc.meshes[mesh_i].primitives):
                if prim.mode not in (None, gl.TRIANGLES) or prim.attributes.POSITION is None:
                    continue
                pos = self._accessor(prim.attributes.POSITION).astype(np.float32)
                tri = (self._accessor(prim.indices).reshape(-1, 3) if prim.indices is not None
                       else np.arange(len(pos)).reshape(-1, 3)).astype(np.int64)
                prims.append(Primitive(node_i, mesh_i, p_i, world, pos, tri))
        return prims

    def rest_vertices(self) -> np.ndarray:
        """(V, 3) float64 world-space rest positions of every primitive, concatenated, glTF frame."""
        return np.concatenate([p.positions @ p.world[:3, :3].T + p.world[:3, 3] for p in self.primitives])

    def triangles(self) -> np.ndarray:
        out, base = [], 0
        for p in self.primitives:
            out.append(p.triangles + base)
            base += len(p.positions)
        return np.concatenate(out)

    # -- writing ---------------------------------------------------------------------------------
    def _overwrite(self, index: int, data: np.ndarray) -> None:
        """Write float32 rows into accessor `index` where they are (its layout and stride kept)."""
        acc = self.doc.accessors[index]
        if acc.componentType != gl.FLOAT or acc.sparse is not None:
            raise ValueError(f"{self.path}: accessor {index} is not plain float32 (quantized or sparse): "
                             "cannot write per-frame positions into it")
        view = self.doc.bufferViews[acc.bufferView]
        width = WIDTH[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        stride = view.byteStride or 4 * width
        buf = np.frombuffer(self._blob, dtype=np.uint8)  # a writable view of the blob
        rows = np.lib.stride_tricks.as_strided(buf[start:], shape=(acc.count, 4 * width), strides=(stride, 1))
        rows[:] = np.ascontiguousarray(data, dtype=np.float32).reshape(acc.count, width).view(np.uint8)
        acc.min, acc.max = data.min(0).astype(float).tolist(), data.max(0).astype(float).tolist()

    def _drop_animation(self) -> None:
        for node in self.doc.nodes:
            node.skin = None
        self.doc.skins, self.doc.animations = [], []

    def _local_frames(self, world_frames: np.ndarray):
        """(primitive, its positions at every frame (T, n, 3) in its own space) for each primitive."""
        if world_frames.shape[1] != sum(len(p.positions) for p in self.primitives):
            raise ValueError(f"{self.path}: {world_frames.shape[1]} positions per frame for "
                             f"{sum(len(p.positions) for p in self.primitives)} vertices")
        base = 0
        for p in self.primitives:
            n = len(p.positions)
            inv = np.linalg.inv(p.world[:3, :3])
            yield p, (world_frames[:, base:base + n] - p.world[:3, 3]) @ inv.T  # back to the primitive's space
            base += n

    def _save(self, path: str) -> str:
        self.doc.buffers[0].byteLength = len(self._blob)
        self.doc.set_binary_blob(bytes(self._blob))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}.glb"
        self.doc.save_binary(tmp)
        os.replace(tmp, path)
        return path

    def write_frames(self, folder: str, world_frames: np.ndarray) -> list[str]:
        """One static GLB per keyframe, `folder/mesh_<tt>.glb`, from world_frames (T, V, 3) as for
        `write_animation`; materials and textures kept. Each starts from the input file afresh."""
        paths = []
        for t in range(len(world_frames)):
            frame = GltfAsset(self.path)
            frame._drop_animation()
            for p, local in frame._local_frames(world_frames[t:t + 1]):
                prim = frame.doc.meshes[p.mesh].primitives[p.index]
                frame._overwrite(prim.attributes.POSITION, local[0])
                if prim.attributes.NORMAL is not None:
                    frame._overwrite(prim.attributes.NORMAL, vertex_normals(local[0], p.triangles))
                prim.targets = None
            for mesh in frame.doc.meshes:
                mesh.weights = None
            paths.append(frame._save(os.path.join(folder, f"mesh_{t:02d}.glb")))
        return paths

    def _append(self, data: np.ndarray, acc_type: str, with_bounds: bool = False) -> int:
        while len(self._blob) % 4:
            self._blob.append(0)
        raw = np.ascontiguousarray(data, dtype=np.float32).tobytes()
        self.doc.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(self._blob), byteLength=len(raw)))
        self._blob += raw
        acc = gl.Accessor(bufferView=len(self.doc.bufferViews) - 1, componentType=gl.FLOAT,
                          count=len(data), type=acc_type)
        if with_bounds:
            flat = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
            acc.min, acc.max = flat.min(0).tolist(), flat.max(0).tolist()
        self.doc.accessors.append(acc)
        return len(self.doc.accessors) - 1

    def write_animation(self, path: str, world_frames: np.ndarray, fps: float, name: str = "driven") -> str:
        """world_frames (T, V, 3): every vertex's world position (glTF frame) at each keyframe."""
        T = len(world_frames)
        self._drop_animation()
        meshes = {}
        for p, local in self._local_frames(world_frames):
            prim = self.doc.meshes[p.mesh].primitives[p.index]
            prim.targets = [{"POSITION": self._append(local[t] - p.positions, "VEC3", with_bounds=True)}
                            for t in range(T)]
            meshes[p.mesh] = p.node
        times = self._append(np.arange(T, dtype=np.float32)[:, None] / fps, "SCALAR", with_bounds=True)
        weights = self._append(np.eye(T, dtype=np.float32).reshape(-1, 1), "SCALAR")
        animation = gl.Animation(name=name, samplers=[gl.AnimationSampler(input=times, output=weights,
                                                                          interpolation="LINEAR")])
        for mesh_i, node_i in meshes.items():
            self.doc.meshes[mesh_i].weights = [0.0] * T
            self.doc.meshes[mesh_i].extras = {**(self.doc.meshes[mesh_i].extras or {}),
                                              "targetNames": [f"frame{t:02d}" for t in range(T)]}
            animation.channels.append(gl.AnimationChannel(
                sampler=0, target=gl.AnimationChannelTarget(node=node_i, path="weights")))
        self.doc.animations = [animation]
        return self._save(path)


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit normals (n, 3): the area-weighted sum of the normals of the triangles at each vertex."""
    a, b, c = (positions[triangles[:, i]] for i in range(3))
    face = np.cross(b - a, c - a)                       # length = twice the area: area weighting
    normals = np.zeros_like(positions, dtype=np.float64)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.where(length > 0, normals / np.maximum(length, 1e-30), [0.0, 0.0, 1.0]).astype(np.float32)
