"""The models learn the task, judged against the answers that need no learning (not by a falling loss,
which a frame-blind model also shows): a VAE overfit on one clip reconstructs each frame from its own
views at points it was not trained on, well under the time-mean control, with latents and decoded
motion that vary over the frames and views that matter; a denoiser trained on that clip's cached
latents generates, from the clip's video, frames nearer their own truth than the clip's other frames.

Both fail on a VAE that collapses to the time-mean (the fusion attending over every image token,
background included: `fusion_object_mask: false`), which is what these tests are for."""
import dataclasses

import numpy as np
import pytest
import torch
import webdataset as wds

from dataset.clip_sample import ClipSample
from dataset.loaders import diffusion_example, collate, vae_clip_batch
from train.config import load_train_config
from train.motion_diagnostics import scores, vae_clip_scores
from train.trainer import Trainer

pytestmark = pytest.mark.slow
VAE_STEPS = 600
DIFFUSION_STEPS = 400


def quiet(cfg):
    cfg.log_every = cfg.checkpoint_every = cfg.val_every = 10**6
    cfg.optim.min_lr_ratio = 1.0  # a constant rate after warm-up
    return cfg


@pytest.fixture(scope="module")
def clip(one_clip):
    return ClipSample(next(iter(wds.WebDataset(one_clip, shardshuffle=False))))


@pytest.fixture(scope="module")
def overfit_vae(one_clip, clip, tmp_path_factory):
    """vae-tiny trained on every keyframe of the clip at once (one P1) with the project's own
    Trainer.train_step, loss and model: (trainer, the training batch)."""
    cfg = quiet(load_train_config("vae-tiny"))
    torch.manual_seed(0)
    trainer = Trainer(cfg, [one_clip], str(tmp_path_factory.mktemp("overfit_vae")))
    batch = vae_clip_batch(clip, cfg.data)
    for _ in range(VAE_STEPS):
        trainer.train_step(batch)
    trainer.objective.eval()
    yield trainer, batch
    trainer.close()


def test_an_overfit_vae_reconstructs_each_frame_from_its_views(overfit_vae, clip):
    trainer, batch = overfit_vae
    vae = trainer.objective.vae
    # surface points it never saw in training: another draw of P1's rows from the dense map
    held = vae_clip_batch(clip, dataclasses.replace(trainer.cfg.data, seed=1))
    assert not torch.equal(held["p1"], batch["p1"])
    with torch.no_grad():
        mean, _ = vae.encode(batch["p1"], batch["views"])
        held_out = scores(vae.decode(mean, held["p1"]), held["pt"])
        seen = vae_clip_scores(vae, batch)
    figures = {**{f"held_{k}": v for k, v in held_out.items()}, **seen}
    # measured (500 steps, 6 keyframes of 32 px): held-out L2 0.2-0.3 of the time-mean's, motion spread
    # 0.9-1.0, latent frame spread 0.5-0.7, view swap 3-6; a collapsed VAE: 1.0, 0.0, 0.0, 1.0
    assert held_out["l2_over_time_mean"] < 0.5, figures
    assert held_out["motion_spread"] > 0.5, figures
    assert seen["latent_frame_spread"] > 0.1, figures
    assert seen["view_swap"] > 1.5, figures  # another frame's views decode a worse frame


def test_a_denoiser_on_the_clips_latents_follows_its_video(overfit_vae, one_clip, clip, tmp_path):
    from train.latent_cache import encode_shards

    vae_trainer, vae_batch = overfit_vae
    vae_path = vae_trainer.save()
    cfg = quiet(load_train_config("diffusion-tiny"))
    cfg.batch_size = 1  # one clip: the latent statistics come from its one batch
    cfg.data = dataclasses.replace(cfg.data, frames_per_clip=clip.num_frames, resample_points=False)
    cache = encode_shards(vae_trainer.objective.vae, [one_clip], str(tmp_path / "latents"), cfg.data)
    torch.manual_seed(0)
    trainer = Trainer(cfg, cache, str(tmp_path / "diffusion"), vae_checkpoint=vae_path)
    trainer.prepare()
    sample = next(iter(wds.WebDataset(cache, shardshuffle=False)))
    cached = ClipSample(sample)
    rng = np.random.default_rng(0)
    batch = collate([diffusion_example(cached, cfg.data, rng, sample) for _ in range(4)])  # every frame, 4 noises
    for _ in range(DIFFUSION_STEPS):
        trainer.train_step(batch)
    obj = trainer.objective.eval()
    with torch.no_grad():
        z = obj.sample(batch["p1"][:1], batch["video"][:1], torch.Generator().manual_seed(0))[0]
        pred = obj.vae.decode(z, batch["p1"][:1].expand(len(z), -1, -1))
    true = vae_clip_batch(clip, cfg.data)["pt"]
    assert torch.equal(vae_clip_batch(clip, cfg.data)["p1"][0], batch["p1"][0])  # the same points
    figures = scores(pred, true)
    trainer.close()
    # measured: every frame nearest its own truth, L2 0.3-0.4 of the time-mean's
    assert figures["frame_following"] >= 5 / 6, figures
    assert figures["l2_over_time_mean"] < 0.8, figures
