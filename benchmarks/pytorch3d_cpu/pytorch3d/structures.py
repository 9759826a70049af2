"""pytorch3d.structures.Meshes for what ActionBench reads of it (lists, packed tensors, validity)."""
import torch


class Meshes:
    def __init__(self, verts: list[torch.Tensor], faces: list[torch.Tensor]):
        self._verts, self._faces = list(verts), list(faces)
        self.device = self._verts[0].device if self._verts else torch.device("cpu")
        self.valid = torch.tensor([len(f) > 0 for f in self._faces], dtype=torch.bool)

    def __len__(self) -> int:
        return len(self._verts)

    def __getitem__(self, k: int) -> "Meshes":
        return Meshes([self._verts[k]], [self._faces[k]])

    def isempty(self) -> bool:
        return len(self) == 0 or not any(len(v) for v in self._verts)

    def verts_list(self):
        return self._verts

    def faces_list(self):
        return self._faces

    def verts_packed(self) -> torch.Tensor:
        return torch.cat(self._verts)

    def faces_packed(self) -> torch.Tensor:  # each mesh's faces offset by the vertices before it
        offsets = torch.cumsum(torch.tensor([0] + [len(v) for v in self._verts[:-1]]), 0)
        return torch.cat([f + o for f, o in zip(self._faces, offsets)])

    def num_faces_per_mesh(self) -> torch.Tensor:
        return torch.tensor([len(f) for f in self._faces])

    def mesh_to_faces_packed_first_idx(self) -> torch.Tensor:
        counts = self.num_faces_per_mesh()
        return torch.cumsum(counts, 0) - counts


def join_meshes_as_batch(meshes: list[Meshes]) -> Meshes:
    return Meshes([v for m in meshes for v in m.verts_list()], [f for m in meshes for f in m.faces_list()])
