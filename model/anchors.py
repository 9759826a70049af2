"""The anchor points of a clip: the M farthest-point samples of P1. Latent i of the VAE and of the
denoiser both belong to anchor i, so both models take their anchors from this one function, and a
training step computes them once per clip and hands them to both."""
from __future__ import annotations

import torch


@torch.no_grad()
def farthest_point_sample(points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, k) of k farthest points of each cloud in `points` (B, P, 3).

    Deterministic: starts at index 0 and breaks ties by the lowest index, so one cloud always yields
    the same samples in the same order. k sweeps of O(P) tensor ops, on whatever device `points` is."""
    batch, num_points, _ = points.shape
    if not 0 < k <= num_points:
        raise ValueError(f"farthest_point_sample: cannot pick k={k} of {num_points} points")
    points = points.float()
    rows = torch.arange(batch, device=points.device)
    chosen = torch.empty(batch, k, dtype=torch.long, device=points.device)
    nearest_chosen = torch.full((batch, num_points), float("inf"), device=points.device)
    farthest = torch.zeros(batch, dtype=torch.long, device=points.device)
    for i in range(k):
        chosen[:, i] = farthest
        newest = points[rows, farthest].unsqueeze(1)  # (B, 1, 3)
        nearest_chosen = torch.minimum(nearest_chosen, ((points - newest) ** 2).sum(-1))
        farthest = nearest_chosen.argmax(dim=-1)  # argmax returns the first maximum
    return chosen


def gather_points(points: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """points (B, P, D) at indices (B, k) -> (B, k, D)."""
    return torch.gather(points, 1, indices.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


def anchor_points(p1: torch.Tensor, num_latents: int) -> torch.Tensor:
    """The M = num_latents anchors of each rest cloud p1 (B, N, 3): (B, M, 3), in FPS order."""
    return gather_points(p1, farthest_point_sample(p1, num_latents))
