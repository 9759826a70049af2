"""model/: FPS, the motion VAE, EDM preconditioning / loss / sampler, and the latent denoiser.
CPU, tiny configurations, whole file well under a minute."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from model import (VAE, Denoiser, DenoiserConfig, EDMConfig, EDMPrecond, VAEConfig, anchor_points, edm_loss,
                   edm_sigmas, farthest_point_sample, heun_sample)
from train.objectives import VAELossConfig, VAEObjective, vae_loss


def _switch_on_zero_init(module: nn.Module, std: float = 0.3) -> None:
    """adaLN-Zero gates and zero output heads make an untrained network ignore its inputs; give every
    all-zero parameter random values so tests can see how information flows."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.normal_(0.0, std)


# ---------------------------------------------------------------- farthest point sampling

def _fps_numpy(points: np.ndarray, k: int) -> list[int]:
    chosen = [0]
    for _ in range(k - 1):
        nearest = [min(np.sum((points[j] - points[c]) ** 2) for c in chosen) for j in range(len(points))]
        chosen.append(int(np.argmax(nearest)))
    return chosen


def test_fps_matches_brute_force():
    torch.manual_seed(0)
    clouds = torch.rand(3, 60, 3)
    picked = farthest_point_sample(clouds, 12)
    assert picked.dtype == torch.long and picked.shape == (3, 12)
    for b in range(3):
        assert picked[b].tolist() == _fps_numpy(clouds[b].double().numpy(), 12)


def test_fps_picks_cube_corners_first():
    torch.manual_seed(0)
    corners = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
    interior = torch.rand(100, 3) - 0.5  # inside [-0.5, 0.5]^3: always nearer than 2 to a chosen corner
    cloud = torch.cat([corners, interior])[None]
    picked = farthest_point_sample(cloud, 10)[0].tolist()
    assert sorted(picked[:8]) == list(range(8))
    assert all(i >= 8 for i in picked[8:])


# ---------------------------------------------------------------- VAE

def _vae_batch(cfg: VAEConfig, batch=2, points=40):
    p1 = torch.rand(batch, points, 3) * 2 - 1
    views = torch.randn(batch, cfg.views, cfg.image_channels, cfg.image_size, cfg.image_size)
    return p1, views


def test_vae_shapes():
    torch.manual_seed(0)
    cfg = VAEConfig.tiny()
    vae = VAE(cfg).eval()
    p1, views = _vae_batch(cfg)
    mean, logvar = vae.encode(p1, views)
    assert mean.shape == logvar.shape == (2, cfg.num_latents, cfg.latent_channels)
    z = vae.sample(mean, logvar)
    assert z.shape == mean.shape and not torch.equal(z, mean)
    assert vae.decode(z, p1).shape == p1.shape
    out = vae(p1, views)
    assert out["pred"].shape == p1.shape and out["z"].shape == mean.shape
    # Without sampling, z is the posterior mean.
    assert torch.equal(vae(p1, views, sample_posterior=False)["z"], mean)


def test_vae_decode_chunked_equals_unchunked_and_any_query_count():
    torch.manual_seed(0)
    cfg = VAEConfig.tiny()
    vae = VAE(cfg).eval()
    _switch_on_zero_init(vae)  # otherwise the displacement head is zero and every decode is trivial
    z = torch.randn(2, cfg.num_latents, cfg.latent_channels)
    queries = torch.rand(2, 53, 3)
    whole = vae.decode(z, queries)
    assert not torch.allclose(whole, queries)
    torch.testing.assert_close(vae.decode(z, queries, chunk_size=7), whole, atol=1e-5, rtol=0)
    few = vae.decode(z, queries[:, :5])
    torch.testing.assert_close(few, whole[:, :5], atol=1e-5, rtol=0)  # a query's answer ignores other queries


def test_ray_bias_peaks_at_the_token_whose_cell_shows_the_point():
    """The fusion's ray bias is largest at the image token whose cell the point projects into, in
    every view: a wrong ray-distance formula or token order would peak elsewhere."""
    from dataset.view_tensors import plucker_rays

    torch.manual_seed(0)
    cfg = dataclasses.replace(VAEConfig.tiny(), fusion_ray_bias=True, views=3, image_size=64)  # 16 x 16 cells
    vae = VAE(cfg)
    size, cells = cfg.image_size, 2 * (cfg.image_size // cfg.patch_size)
    cell_px = size // cells
    K = np.array([[40.0, 0, (size - 1) / 2], [0, 40.0, (size - 1) / 2], [0, 0, 1]])
    cameras = []
    for azimuth in (0.0, 1.2, 2.5):  # cameras on a circle looking at the origin, OpenCV convention
        c, s_ = math.cos(azimuth), math.sin(azimuth)
        R = np.array([[c, s_, 0.0], [0.0, 0.0, -1.0], [-s_, c, 0.0]])
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = R, [0.0, 0.0, 2.5]
        cameras.append(w2c)
    views = torch.zeros(1, 3, 9, size, size)
    views[0, :, 3:] = torch.as_tensor(np.stack([plucker_rays(K, w, size) for w in cameras]))
    # a point on the ray through the centre of cell (row 5, column 9) of view 0, at depth 2.3
    row, col = 5, 9
    u, v = col * cell_px + (cell_px - 1) / 2, row * cell_px + (cell_px - 1) / 2
    R, t = cameras[0][:3, :3], cameras[0][:3, 3]
    point = R.T @ (2.3 * np.linalg.inv(K) @ np.array([u, v, 1.0]) - t)
    anchors = torch.as_tensor(point, dtype=torch.float32)[None, None]
    with torch.no_grad():
        bias = vae.ray_bias(anchors, views)[0, 0, 0].reshape(3, cells, cells)   # head 0, the one anchor
    for view, w2c in enumerate(cameras):
        pc = w2c[:3, :3] @ point + w2c[:3, 3]
        pu, pv = (K @ pc)[:2] / pc[2]
        want = np.array([(pv + 0.5) // cell_px, (pu + 0.5) // cell_px], dtype=int)
        assert ((want >= 0) & (want < cells)).all(), (view, want)   # the point is in every view
        peak = int(bias[view].argmax())
        got = np.array([peak // cells, peak % cells])
        # exact where the point is a cell's centre (view 0); elsewhere a point near a cell's edge may
        # be nearer the neighbour's mean ray
        assert np.abs(got - want).max() <= (0 if view == 0 else 1), (view, got, want)
    assert float(bias[0, row, col]) > -1e-3  # the point lies on that cell's ray


def test_decoder_anchor_bias_ties_a_query_to_the_latents_of_its_anchors():
    """With the decoder's anchor bias a query point's answer depends on the latents of the anchors near
    it far more than on a distant anchor's; the decoder refuses to run without the anchors."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(VAEConfig.tiny(), decoder_anchor_bias=True, bias_width_min=0.05,
                              bias_width_max=0.1)
    vae = VAE(cfg).eval()
    _switch_on_zero_init(vae)
    anchors = torch.stack([torch.linspace(-0.5, 0.5, cfg.num_latents), torch.zeros(cfg.num_latents),
                           torch.zeros(cfg.num_latents)], dim=-1)[None]
    query = anchors[:, :1] + 0.01                                           # next to anchor 0
    z = torch.randn(1, cfg.num_latents, cfg.latent_channels)
    with pytest.raises(ValueError, match="anchor"):
        vae.decode(z, query)
    base = vae.decode(z, query, anchors=anchors)
    near, far = z.clone(), z.clone()
    near[:, 0] += 1.0
    far[:, -1] += 1.0
    # the decoder's self-attention mixes latents, so the far change is not zero, but much smaller
    with torch.no_grad():
        moved_near = float((vae.decode(near, query, anchors=anchors) - base).norm())
        moved_far = float((vae.decode(far, query, anchors=anchors) - base).norm())
    assert moved_near > 3 * moved_far, (moved_near, moved_far)


def test_vae_loss_matches_hand_computation():
    torch.manual_seed(0)
    cfg = VAEConfig.tiny()
    vae = VAE(cfg)
    _switch_on_zero_init(vae)
    p1, views = _vae_batch(cfg)
    pt = p1 + torch.randn_like(p1) * 0.1
    torch.manual_seed(1)
    out = vae(p1, views)
    err = (out["pred"] - pt).detach().double().numpy()
    mse = np.mean(err ** 2)
    dis = np.mean(np.sqrt(np.sum(err ** 2, axis=-1)))
    mu, logvar = out["mean"].double().detach().numpy(), out["logvar"].double().detach().numpy()
    kl = np.mean(0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1))
    losses = vae_loss(out, pt, VAELossConfig())
    torch.manual_seed(1)  # the objective's step: the same posterior sample, the same terms
    step = VAEObjective(vae)({"p1": p1, "views": views, "pt": pt})
    for name, value in [("mse", mse), ("dis", dis), ("kl", kl)]:
        assert losses[name].item() == pytest.approx(value, rel=1e-5), name
        assert step[name].item() == pytest.approx(value, rel=1e-5), name
    assert losses["loss"].item() == pytest.approx(mse + 0.1 * dis + 1e-3 * kl, rel=1e-5)
    dis_only = vae_loss(out, pt, VAELossConfig(mse_weight=0.0, dis_weight=1.0))["loss"]
    assert dis_only.item() == pytest.approx(dis + 1e-3 * kl, rel=1e-5)


def test_vae_overfits_one_rotation_batch():
    torch.manual_seed(0)
    cfg = VAEConfig.tiny()
    vae = VAE(cfg)
    objective = VAEObjective(vae)
    p1, views = _vae_batch(cfg, batch=2, points=64)
    angle = math.radians(40)
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0],
                             [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    pt = p1 @ rotation.T
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = objective({"p1": p1, "views": views, "pt": pt})["loss"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = vae_loss(vae(p1, views, sample_posterior=False), pt, objective.loss)["loss"].item()
    assert final < first / 5, (first, final)


# ---------------------------------------------------------------- EDM

class _Probe(nn.Module):
    """F_theta that records its inputs and returns a constant."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x, c_noise):
        self.seen = (x.clone(), c_noise.clone())
        return torch.full_like(x, self.value)


def test_edm_precond_table1_coefficients():
    sd = 0.5
    sigma = torch.tensor([0.002, 0.3, 2.0, 80.0])
    x = torch.randn(4, 3, 5)
    zero = EDMPrecond(_Probe(0.0), sd)
    D = zero(x, sigma)
    for i, s in enumerate(sigma.tolist()):
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / math.sqrt(s ** 2 + sd ** 2)
        c_in = 1 / math.sqrt(s ** 2 + sd ** 2)
        torch.testing.assert_close(D[i], c_skip * x[i])                       # F = 0 leaves c_skip x
        torch.testing.assert_close(zero.net.seen[0][i], c_in * x[i])          # F sees c_in x
        assert zero.net.seen[1][i].item() == pytest.approx(math.log(s) / 4, rel=1e-6)
        one = EDMPrecond(_Probe(1.0), sd)
        assert one(torch.zeros(4, 3, 5), sigma)[i].flatten()[0].item() == pytest.approx(c_out, rel=1e-6)


def test_edm_sigmas_schedule():
    cfg = EDMConfig()
    sigmas = edm_sigmas(cfg, "cpu")
    assert sigmas.shape == (cfg.num_steps + 1,)
    assert sigmas[0].item() == pytest.approx(cfg.sigma_max)
    assert sigmas[-2].item() == pytest.approx(cfg.sigma_min, rel=1e-5)
    assert sigmas[-1].item() == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])


class _GaussianDenoiser(nn.Module):
    """The exact D(x; sigma) = E[y | y + n = x] for data y ~ N(0, sd^2)."""

    def __init__(self, sd: float):
        super().__init__()
        self.sd = sd

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma).reshape(-1, *([1] * (x.ndim - 1)))
        return x * self.sd ** 2 / (s ** 2 + self.sd ** 2)


class _TwoPointDenoiser(nn.Module):
    """The exact D for data y = +-a with equal probability: a tanh(a x / sigma^2)."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma).reshape(-1, *([1] * (x.ndim - 1)))
        return self.a * torch.tanh(self.a * x / s ** 2)


def test_heun_sample_gaussian_data_has_data_std():
    # Heun is 2nd order: the std error here is ~5.5% at the default 18 steps and ~1.1% at 40
    # (ratio (40/18)^2), so 40 steps lets the tolerance be tight.
    sd = 0.5
    generator = torch.Generator().manual_seed(0)
    samples = heun_sample(_GaussianDenoiser(sd), (20000, 4), EDMConfig(num_steps=40), generator)
    assert samples.std().item() == pytest.approx(sd, rel=0.02)
    assert samples.mean().abs().item() < 0.01
    # With churn the sampler is stochastic but must still reach the data distribution.
    churned = heun_sample(_GaussianDenoiser(sd), (20000, 4), EDMConfig(num_steps=40, S_churn=10.0), generator)
    assert churned.std().item() == pytest.approx(sd, rel=0.05)


def test_heun_sample_two_point_data_lands_on_points():
    torch.manual_seed(0)
    samples = heun_sample(_TwoPointDenoiser(1.0), (4000,), EDMConfig())
    assert torch.all((samples.abs() - 1.0).abs() < 0.02)
    assert 0.4 < (samples > 0).float().mean().item() < 0.6  # both modes, in proportion


def test_edm_loss_of_exact_denoiser_is_one():
    # For Gaussian data the exact denoiser's error variance is sigma^2 sd^2 / (sigma^2 + sd^2) = 1 / lambda.
    sd = 0.5
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(20000, 8, generator=generator) * sd
    loss = edm_loss(_GaussianDenoiser(sd), y, EDMConfig(sigma_data=sd), generator)
    assert loss.item() == pytest.approx(1.0, rel=0.03)
    assert edm_loss(_GaussianDenoiser(2 * sd), y, EDMConfig(sigma_data=sd), generator).item() > 1.1


# ---------------------------------------------------------------- denoiser

def _denoiser_inputs(cfg: DenoiserConfig, batch=2, frames=3, latents=16, points=40):
    x = torch.randn(batch, frames, latents, cfg.latent_channels)
    c_noise = torch.randn(batch)
    p1 = torch.rand(batch, points, 3)
    video = torch.randn(batch, frames, cfg.image_channels, cfg.image_size, cfg.image_size)
    return x, c_noise, p1, video


def test_denoiser_shape_and_zero_output_at_init():
    torch.manual_seed(0)
    cfg = DenoiserConfig.tiny()
    net = Denoiser(cfg)
    x, c_noise, p1, video = _denoiser_inputs(cfg)
    out = net(x, c_noise, p1, video)
    assert out.shape == x.shape
    assert torch.all(out == 0)  # zero-initialised head: D = c_skip x at the start of training


def test_precomputed_condition_gives_the_same_output():
    torch.manual_seed(0)
    cfg = DenoiserConfig.tiny()
    net = Denoiser(cfg).eval()
    _switch_on_zero_init(net)
    x, c_noise, p1, video = _denoiser_inputs(cfg)
    with torch.no_grad():
        direct = net(x, c_noise, p1, video)
        cached = net(x, c_noise, condition=net.condition(p1, video, anchor_points(p1, x.shape[2])))
    assert direct.abs().max() > 0 and torch.equal(direct, cached)


def test_denoiser_is_equivariant_to_frame_order():
    torch.manual_seed(0)
    cfg = DenoiserConfig.tiny()
    net = Denoiser(cfg).eval()
    _switch_on_zero_init(net)
    x, c_noise, p1, video = _denoiser_inputs(cfg, frames=4)
    order = torch.tensor([2, 0, 3, 1])
    out = net(x, c_noise, p1, video)
    permuted = net(x[:, order], c_noise, p1, video[:, order])
    torch.testing.assert_close(permuted, out[:, order], atol=1e-5, rtol=1e-5)


def test_denoiser_video_frame_reaches_its_frame_and_others():
    torch.manual_seed(0)
    cfg = DenoiserConfig.tiny()
    net = Denoiser(cfg).eval()
    _switch_on_zero_init(net)
    x, c_noise, p1, video = _denoiser_inputs(cfg, frames=3)
    out = net(x, c_noise, p1, video)
    changed = video.clone()
    changed[:, 1] = torch.randn_like(changed[:, 1])
    out2 = net(x, c_noise, p1, changed)
    assert (out2[:, 1] - out[:, 1]).abs().max() > 1e-3   # cross-attention to frame 1's own video
    assert (out2[:, 0] - out[:, 0]).abs().max() > 1e-4   # temporal attention carries it to frame 0
    # Batch elements stay independent.
    changed_other = video.clone()
    changed_other[0, 1] = torch.randn_like(changed_other[0, 1])
    torch.testing.assert_close(net(x, c_noise, p1, changed_other)[1], out[1])


def test_denoiser_edm_loss_backpropagates_everywhere():
    torch.manual_seed(0)
    cfg = DenoiserConfig.tiny()
    net = Denoiser(cfg)
    _switch_on_zero_init(net)
    precond = EDMPrecond(net, sigma_data=0.5)
    x, _, p1, video = _denoiser_inputs(cfg)
    loss = edm_loss(precond, x, EDMConfig(), torch.Generator().manual_seed(0), p1=p1, video=video)
    assert torch.isfinite(loss)
    loss.backward()
    dead = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.any()]
    assert dead == []
