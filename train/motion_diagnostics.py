"""Figures that tell a model that follows each frame from one that does not. A falling loss does not:
a VAE that decodes every point at its mean position over the clip (a "time-mean" answer, which never
reads the images) halves the loss of the untrained model. So every figure here is measured on whole
clips against the two answers that need no learning:

- static control: every frame predicted as frame 0 (the rest pose held still);
- time-mean control: each point at its own mean position over the clip's frames.

and the signs of posterior collapse are read off directly:

- latent_frame_spread: the spread of the posterior means across a clip's frames over their spread
  across frames and entries (0: the latents are the same for every frame, whatever the images show);
- motion_spread: the decoded positions' spread over frames over the true positions' spread (0: the
  decoded shape does not move);
- view_swap: L2 of frame t decoded from the views of frame T-1-t over L2 decoded from its own views
  (1: the model does not use the images; a model that reads them is worse with the wrong ones);
- frame_following: the share of frames whose prediction is nearer that frame's truth than any other
  frame's of the same clip (1/T by chance for a frame-blind answer).

All L2 figures are per-point Euclidean distances averaged over frames 1..T-1 (frame 0 is the rest
pose that every answer knows)."""
from __future__ import annotations

import torch


def controls(true: torch.Tensor) -> dict[str, torch.Tensor]:
    """true (T, N, 3) -> the static and time-mean answers, each (T, N, 3)."""
    return {"static": true[:1].expand_as(true), "time_mean": true.mean(0, keepdim=True).expand_as(true)}


def motion_l2(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Mean per-point L2 over frames 1..T-1: pred, true (T, N, 3)."""
    return float(torch.linalg.vector_norm(pred[1:].float() - true[1:].float(), dim=-1).mean())


def spread_over_frames(points: torch.Tensor) -> float:
    """Mean over points of the RMS distance of a point from its own mean over frames: (T, N, 3)."""
    points = points.float()
    return float((points - points.mean(0, keepdim=True)).pow(2).sum(-1).mean(0).sqrt().mean())


def frame_following(pred: torch.Tensor, true: torch.Tensor) -> float:
    """Share of frames t whose prediction is nearer true[t] than every other true[s] (mean L2)."""
    pred, true = pred.float(), true.float()
    distance = torch.stack([torch.linalg.vector_norm(pred[t:t + 1] - true, dim=-1).mean(-1)
                            for t in range(len(pred))])                               # (T pred, T true)
    return float((distance.argmin(dim=1) == torch.arange(len(pred), device=pred.device)).float().mean())


def scores(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """pred, true (T, N, 3) of one clip: L2 and the L2 of both controls, their ratios, motion spread
    and frame following."""
    c = controls(true)
    l2 = motion_l2(pred, true)
    static, time_mean = motion_l2(c["static"], true), motion_l2(c["time_mean"], true)
    return {"l2": l2, "l2_static": static, "l2_time_mean": time_mean,
            "l2_over_static": l2 / max(static, 1e-12), "l2_over_time_mean": l2 / max(time_mean, 1e-12),
            "motion_spread": spread_over_frames(pred) / max(spread_over_frames(true), 1e-12),
            "frame_following": frame_following(pred, true)}


@torch.no_grad()
def vae_clip_scores(vae, batch: dict) -> dict[str, float]:
    """The VAE's reconstruction of one whole clip (a `vae_clip_batch`: every keyframe, one P1) from
    each frame's posterior mean, scored against the controls, with the collapse figures."""
    from model.anchors import anchor_points

    p1, views, true = batch["p1"], batch["views"], batch["pt"]
    anchors = batch["anchors"] if "anchors" in batch else \
        anchor_points(p1[:1], vae.cfg.num_latents).expand(len(p1), -1, -1)
    mean, _ = vae.encode(p1, views, anchors)
    pred = vae.decode(mean, p1, anchors=anchors)
    swapped = vae.decode(vae.encode(p1, views.flip(0), anchors)[0], p1, anchors=anchors)
    return {**scores(pred, true), **collapse_scores(mean, pred, swapped, true)}


def latent_frame_spread(mean: torch.Tensor) -> float:
    """mean (T, M, C0) posterior means of one clip's frames: their std over frames (mean over entries)
    over their std over frames and entries together."""
    mean = mean.float()
    return float(mean.std(0).mean()) / max(float(mean.std()), 1e-12)


def collapse_scores(mean: torch.Tensor, pred: torch.Tensor, swapped: torch.Tensor, true: torch.Tensor
                    ) -> dict[str, float]:
    """The latents' spread over frames, and the view swap: `swapped` is frame t decoded from the views
    of frame T-1-t (the odd middle frame swaps with itself; the ratio is over frames 1..T-1)."""
    return {"latent_frame_spread": latent_frame_spread(mean),
            "view_swap": motion_l2(swapped, true) / max(motion_l2(pred, true), 1e-12)}


def mean_scores(per_clip: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's mean over clips (every clip counts once)."""
    if not per_clip:
        return {}
    return {k: sum(s[k] for s in per_clip) / len(per_clip) for k in per_clip[0]}
