"""pytorch3d.transforms.transform3d for what ActionBench does with it: Scale, Rotate and Translate
of a batch, compose, stack, transform_points. Row vectors: points @ M, M (N, 4, 4)."""
import torch


def _broadcast_bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() == 2:
        a = a[None]
    if len(a) != len(b):
        if len(a) == 1:
            a = a.expand(len(b), -1, -1)
        elif len(b) == 1:
            b = b.expand(len(a), -1, -1)
        else:
            raise ValueError(f"batch sizes {len(a)} and {len(b)} do not broadcast")
    return a.bmm(b)


class Transform3d:
    def __init__(self, matrix: torch.Tensor | None = None):
        self._matrix = torch.eye(4)[None] if matrix is None else matrix
        self._transforms: list[Transform3d] = []

    def get_matrix(self) -> torch.Tensor:
        m = self._matrix
        for other in self._transforms:
            m = _broadcast_bmm(m, other.get_matrix())
        return m

    def compose(self, *others: "Transform3d") -> "Transform3d":
        out = Transform3d(self._matrix.clone())
        out._transforms = self._transforms + list(others)
        return out

    def stack(self, *others: "Transform3d") -> "Transform3d":
        return Transform3d(torch.cat([t.get_matrix() for t in (self, *others)], dim=0))

    def transform_points(self, points: torch.Tensor) -> torch.Tensor:
        batch = points[None] if points.dim() == 2 else points
        ones = torch.ones(batch.shape[:-1] + (1,), dtype=batch.dtype, device=batch.device)
        out = _broadcast_bmm(torch.cat([batch, ones], dim=-1), self.get_matrix().to(batch.dtype))
        out = out[..., :3] / out[..., 3:]
        return out[0] if points.dim() == 2 else out

    def __len__(self) -> int:
        return len(self.get_matrix())


class Scale(Transform3d):
    def __init__(self, s: torch.Tensor):
        m = torch.eye(4, dtype=s.dtype, device=s.device).repeat(len(s), 1, 1)
        m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = s[:, 0], s[:, 1], s[:, 2]
        super().__init__(m)


class Rotate(Transform3d):
    def __init__(self, R: torch.Tensor):
        m = torch.eye(4, dtype=R.dtype, device=R.device).repeat(len(R), 1, 1)
        m[:, :3, :3] = R
        super().__init__(m)


class Translate(Transform3d):
    def __init__(self, t: torch.Tensor):
        m = torch.eye(4, dtype=t.dtype, device=t.device).repeat(len(t), 1, 1)
        m[:, 3, :3] = t
        super().__init__(m)
