"""Training configurations and objectives without shards: every ablation is the paper configuration
plus its one change, a denoiser whose latent width differs from its VAE's is refused at start, and a
diffusion training step runs farthest point sampling once per clip."""
import dataclasses

import pytest
import torch
import yaml

import model.anchors
from model.denoiser import Denoiser, DenoiserConfig
from model.edm import EDMConfig
from model.vae import VAE, VAEConfig
from train import checkpoint
from train.config import DEFAULT_FILE, load_train_config
from train.objectives import DiffusionObjective
from train.trainer import Trainer


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_every_ablation_is_the_paper_configuration_plus_its_own_change():
    with open(DEFAULT_FILE) as f:
        doc = yaml.safe_load(f)
    ablations = [n for n in doc if n.startswith(("vae-loss-", "vae-c"))]
    assert len(ablations) == 7  # Table 2's two rows and Table 3's five beside vae-paper
    paper = _flat(dataclasses.asdict(load_train_config("vae-paper")))
    for name in ablations:
        assert doc[name].get("extends") == "vae-paper", name
        own = set(_flat({k: v for k, v in doc[name].items() if k != "extends"}))
        cfg = _flat(dataclasses.asdict(load_train_config(name)))
        differ = {k for k in paper if cfg[k] != paper[k]} - {"name"}
        assert differ == own, (name, differ, own)
        assert cfg["data.resampled"] is True and cfg["optim.warmup_steps"] == paper["optim.warmup_steps"]


def test_extends_merges_mapping_by_mapping_and_refuses_unknown_and_cycles(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("base: {kind: vae, data: {num_points: 64, image_size: 32}, batch_size: 3}\n"
                    "child: {extends: base, data: {num_points: 128}}\n"
                    "loop-a: {extends: loop-b}\nloop-b: {extends: loop-a}\n"
                    "orphan: {extends: nowhere}\n")
    cfg = load_train_config(f"{path}:child")
    assert (cfg.data.num_points, cfg.data.image_size, cfg.batch_size) == (128, 32, 3)
    with pytest.raises(ValueError, match="cycle"):
        load_train_config(f"{path}:loop-a")
    with pytest.raises(ValueError, match="'nowhere'"):
        load_train_config(f"{path}:orphan")
    single = tmp_path / "one.yaml"  # a file of one configuration extends one of training.yaml
    single.write_text("extends: vae-tiny\nbatch_size: 2\n")
    one = load_train_config(str(single))
    assert one.batch_size == 2 and one.vae == load_train_config("vae-tiny").vae


def _vae_checkpoint(folder, latent_channels: int) -> str:
    cfg = load_train_config("vae-tiny")
    cfg.vae.latent_channels = latent_channels
    return checkpoint.save(str(folder), 1, {"config": dataclasses.asdict(cfg), "model": VAE(cfg.vae).state_dict()})


def test_a_denoiser_of_another_latent_width_than_its_vae_is_refused_at_start(tmp_path):
    vae = _vae_checkpoint(tmp_path / "vae", latent_channels=8)
    cfg = load_train_config("diffusion-tiny")
    cfg.denoiser.latent_channels = 16
    with pytest.raises(ValueError) as refused:
        Trainer(cfg, [], str(tmp_path / "run"), vae_checkpoint=vae)
    assert "16" in str(refused.value) and "8" in str(refused.value) and "latent_channels" in str(refused.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    cfg.denoiser.latent_channels = 8
    Trainer(cfg, [], str(tmp_path / "run"), vae_checkpoint=vae).close()


def test_a_diffusion_step_runs_farthest_point_sampling_once_per_clip(monkeypatch):
    torch.manual_seed(0)
    vae_cfg, den_cfg = VAEConfig.tiny(), DenoiserConfig.tiny()
    objective = DiffusionObjective(Denoiser(den_cfg), VAE(vae_cfg), EDMConfig())
    clips, frames, points = 2, 3, 40
    calls = []
    fps = model.anchors.farthest_point_sample
    monkeypatch.setattr(model.anchors, "farthest_point_sample",
                        lambda p, k: calls.append(p.shape[0]) or fps(p, k))
    size = vae_cfg.image_size
    on_the_fly = {"p1": torch.rand(clips, points, 3), "video": torch.randn(clips, frames, 3, size, size),
                  "views": torch.randn(clips, frames, vae_cfg.views, vae_cfg.image_channels, size, size)}
    objective(on_the_fly)["loss"].backward()
    assert calls == [clips]  # one FPS over the batch's clips, shared by encoder and denoiser
    calls.clear()
    cached = {k: v for k, v in on_the_fly.items() if k != "views"}
    cached["latents"] = torch.randn(clips, frames, vae_cfg.num_latents, vae_cfg.latent_channels)
    objective(cached)
    assert calls == [clips]


def test_the_vae_bias_widths_are_not_weight_decayed(tmp_path):
    cfg = load_train_config("vae-tiny")
    cfg.vae.decoder_anchor_bias = cfg.vae.fusion_ray_bias = True
    cfg.optim.weight_decay = 0.5
    trainer = Trainer(cfg, [], str(tmp_path / "run"))
    decayed, free = trainer.optimizer.param_groups
    assert decayed["weight_decay"] == 0.5 and free["weight_decay"] == 0.0
    vae = trainer.objective.vae
    assert {id(p) for p in free["params"]} == {id(vae.anchor_bias_log_width), id(vae.ray_bias_log_width)}
    assert len(decayed["params"]) + 2 == len(trainer.params)
    trainer.close()
    cfg.vae.decoder_anchor_bias = cfg.vae.fusion_ray_bias = False
    plain = Trainer(cfg, [], str(tmp_path / "plain"))
    assert len(plain.optimizer.param_groups) == 1  # what checkpoints without the biases hold
    plain.close()
