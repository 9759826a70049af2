import torch


def mesh_face_areas_normals(verts: torch.Tensor, faces: torch.Tensor):
    """(F,) areas and (F, 3) unit normals, n = (v1 - v0) x (v2 - v0), area |n| / 2."""
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))
    n = torch.cross(v1 - v0, v2 - v0, dim=1)
    norm = n.norm(dim=1)
    return norm / 2, n / norm.clamp_min(1e-12)[:, None]
