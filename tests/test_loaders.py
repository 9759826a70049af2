"""Loaders built from the pipeline's shards only: every member decoded to the right shapes, Pluecker
rays that pass through the vertices they see, P1/Pt correspondence, and an epoch over two worker
processes that yields every clip exactly once."""
import numpy as np
import pytest
import torch
import webdataset as wds

from dataset.clip_sample import ClipSample
from dataset.loaders import LoaderConfig, dense_map, diffusion_example, make_loader
from dataset.point_sampling import farthest_points
from dataset.view_tensors import camera_rays

pytestmark = pytest.mark.slow
CFG = LoaderConfig(num_points=256, image_size=32, frames_per_clip=2, shuffle_buffer=4)


def all_keys(urls):
    return sorted(s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False))


def test_two_workers_read_every_clip_once_per_epoch(clip_shards):
    keys = []
    for batch in make_loader(clip_shards["all"], "vae", CFG, batch_size=1, num_workers=2, drop_last=False):
        keys += batch["key"]
    assert sorted(keys) == all_keys(clip_shards["all"]) and len(keys) == clip_shards["clips"]
    again = [k for b in make_loader(clip_shards["all"], "vae", CFG, batch_size=1, num_workers=2, epoch=1,
                                    drop_last=False) for k in b["key"]]
    assert sorted(again) == sorted(keys) and again != keys  # a new epoch: same clips, another order


def test_vae_batches_follow_the_contract(clip_shards):
    batch = next(iter(make_loader(clip_shards["train"], "vae", CFG, batch_size=2)))
    assert batch["p1"].shape == batch["pt"].shape == (2, 256, 3) and batch["p1"].dtype == torch.float32
    assert batch["views"].shape == (2, 4, 9, 32, 32)
    rgb, rays = batch["views"][:, :, :3], batch["views"][:, :, 3:]
    assert rgb.min() >= -1 and rgb.max() <= 1 and rgb.std() > 0.01
    assert torch.allclose(rays[:, :, :3].norm(dim=2), torch.ones(1), atol=1e-5)  # unit directions
    # Pt is P1 moved: the same surface points, so where t is keyframe 0 Pt is P1 exactly
    for i in range(2):
        assert torch.equal(batch["p1"][i], batch["pt"][i]) == (int(batch["t"][i]) == 0)


def test_pluecker_rays_pass_through_the_vertices_they_see(clip_shards):
    clip = ClipSample(next(iter(wds.WebDataset(clip_shards["train"][0], shardshuffle=False))))
    size = clip.cameras["width"]
    rays = camera_rays(clip.cameras, size)
    for v, view in enumerate(clip.cameras["views"]):
        K, w2c = np.array(view["K"]), np.array(view["w2c"])
        p = clip.verts[0][:50].astype(np.float64)
        cam = p @ w2c[:3, :3].T + w2c[:3, 3]
        uv = cam @ K.T
        uv = uv[:, :2] / uv[:, 2:]
        inside = (uv >= 0).all(1) & (uv <= size - 1).all(1)
        u, w = np.round(uv[inside]).astype(int).T
        d, m = rays[v, :3, w, u], rays[v, 3:, w, u]  # (n, 3) each
        # x lies on the ray (d, m) when x x d = m; ||x x d - m|| is its distance from the ray. The
        # nearest pixel centre is at most half a pixel away on each axis: 0.71 px at the vertex's depth.
        miss = np.linalg.norm(np.cross(p[inside], d) - m, axis=1)
        pixel = cam[inside, 2] / K[0, 0]  # one pixel's width at the vertex's depth
        assert inside.sum() > 10 and (miss <= 0.71 * pixel + 1e-6).all() and np.median(miss / pixel) < 0.5


def test_diffusion_batches_hold_sorted_keyframes_and_the_monocular_view(clip_shards):
    batch = next(iter(make_loader(clip_shards["train"], "diffusion", CFG, batch_size=2)))
    assert batch["video"].shape == (2, 2, 3, 32, 32) and batch["views"].shape == (2, 2, 4, 9, 32, 32)
    assert (batch["frames"][:, 1] > batch["frames"][:, 0]).all()
    # the video frame is view 0 of the VAE views of the same keyframe
    assert torch.equal(batch["video"], batch["views"][:, :, 0, :3])
    assert "points" not in batch  # training reads no dense points
    # asked for (evaluation, tests): P_t of the chosen keyframes, the same surface points as P1
    clip = ClipSample(next(iter(wds.WebDataset(clip_shards["train"][0], shardshuffle=False))))
    example = diffusion_example(clip, CFG, np.random.default_rng(0), true_points=True)
    again = diffusion_example(clip, CFG, np.random.default_rng(0))
    assert example["points"].shape == (2, 256, 3) and "points" not in again
    assert np.array_equal(example["p1"], again["p1"]) and np.array_equal(example["frames"], again["frames"])
    S = dense_map(clip)
    first = S @ clip.verts[0]
    matches = [np.flatnonzero(np.all(np.isclose(first, p, atol=1e-6), axis=1)) for p in example["p1"][:40]]
    unique = [(i, m[0]) for i, m in enumerate(matches) if len(m) == 1]  # coincident points aside
    assert len(unique) >= 20
    for f, t in enumerate(example["frames"]):
        dense = S @ clip.verts[int(t)]
        assert all(np.allclose(example["points"][f][i], dense[row], atol=1e-5) for i, row in unique)


def test_farthest_points_spread_out():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(size=(500, 3)) * 0.01, [[5.0, 0, 0], [-5.0, 0, 0]]])
    assert set(farthest_points(pts, 3, start=0)[1:]) == {500, 501}


def test_resumed_position_skips_the_batches_already_seen(clip_shards):
    full = [b["key"] for b in make_loader(clip_shards["all"], "vae", CFG, batch_size=1, drop_last=False)]
    rest = [b["key"] for b in make_loader(clip_shards["all"], "vae", CFG, batch_size=1, skip_batches=2,
                                          drop_last=False)]
    assert rest == full[2:]
    a = next(iter(make_loader(clip_shards["all"], "vae", CFG, batch_size=1, skip_batches=2)))
    b = list(make_loader(clip_shards["all"], "vae", CFG, batch_size=1))[2]
    assert torch.equal(a["p1"], b["p1"]) and torch.equal(a["views"], b["views"])


def test_the_loaders_anchors_are_the_models(clip_shards):
    """Anchors computed in the loader's workers are exactly model.anchors.anchor_points of P1, for
    VAE and diffusion examples: the step that uses them runs no FPS loop of its own."""
    import dataclasses

    from model.anchors import anchor_points

    cfg = dataclasses.replace(CFG, anchors=16)
    for kind in ("vae", "diffusion"):
        batch = next(iter(make_loader(clip_shards["train"], kind, cfg, batch_size=2)))
        assert batch["anchors"].shape == (2, 16, 3)
        assert torch.equal(batch["anchors"], anchor_points(batch["p1"], 16)), kind
    assert "anchors" not in next(iter(make_loader(clip_shards["train"], "vae", CFG, batch_size=2)))


def test_vae_frames_groups_one_clips_keyframes_in_a_batch_and_resumes(clip_shards):
    """data.vae_frames: each clip read gives that many examples at distinct keyframes with one P1,
    side by side in a batch; a resumed position skips whole groups; a group that does not divide the
    batch is refused."""
    import dataclasses

    cfg = dataclasses.replace(CFG, vae_frames=2)
    batches = list(make_loader(clip_shards["all"], "vae", cfg, batch_size=4, drop_last=False))
    for b in batches:
        for i in range(0, len(b["key"]), 2):
            assert b["key"][i] == b["key"][i + 1] and int(b["t"][i]) != int(b["t"][i + 1])
            assert torch.equal(b["p1"][i], b["p1"][i + 1])
    assert sum(len(b["key"]) for b in batches) == 2 * clip_shards["clips"]
    resumed = next(iter(make_loader(clip_shards["all"], "vae", cfg, batch_size=4, skip_batches=1, drop_last=False)))
    assert resumed["key"] == batches[1]["key"] and torch.equal(resumed["pt"], batches[1]["pt"])
    with pytest.raises(ValueError, match="vae_frames=3 must divide batch_size=4"):
        make_loader(clip_shards["all"], "vae", dataclasses.replace(CFG, vae_frames=3), batch_size=4)
