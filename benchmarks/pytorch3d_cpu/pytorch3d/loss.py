"""pytorch3d.loss.chamfer_distance, as ActionBench calls it (point_reduction "mean", norm 2, no
lengths or normals, squared distances)."""
import torch


def _nearest(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """(B, P) index of each point of a's nearest point in b, exhaustive like knn_points(K=1)."""
    out = []
    with torch.no_grad():
        for i in range(0, a.shape[1], chunk):
            out.append(torch.cdist(a[:, i:i + chunk], b).argmin(-1))
    return torch.cat(out, dim=1)


def _gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.gather(points, 1, idx[..., None].expand(-1, -1, points.shape[-1]))


def chamfer_distance(x: torch.Tensor, y: torch.Tensor, batch_reduction: str | None = "mean",
                     point_reduction: str = "mean"):
    if point_reduction != "mean":
        raise NotImplementedError("only point_reduction='mean' is used by ActionBench")
    cham_x = (x - _gather(y, _nearest(x, y))).pow(2).sum(-1).mean(1)
    cham_y = (y - _gather(x, _nearest(y, x))).pow(2).sum(-1).mean(1)
    loss = cham_x + cham_y
    if batch_reduction == "mean":
        loss = loss.mean()
    elif batch_reduction == "sum":
        loss = loss.sum()
    return loss, None
