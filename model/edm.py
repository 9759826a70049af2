"""EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"):
preconditioning (Table 1), training loss (eq. 2 with Table 1's p_train and lambda), time steps (eq. 5)
and the Heun sampler (Algorithm 2). Literal transcriptions, NVlabs/edm style; see paper 3.4 eq. 8."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EDMConfig:
    sigma_data: float = 0.5
    P_mean: float = -1.2        # ln(sigma) ~ N(P_mean, P_std^2) in training
    P_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    num_steps: int = 18
    S_churn: float = 0.0
    S_min: float = 0.0
    S_max: float = math.inf
    S_noise: float = 1.0


class EDMPrecond(nn.Module):
    """D_theta(x; sigma) = c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x; c_noise(sigma)) (eq. 7)."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, **cond) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) broadcast over every other dim of x
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)              # Table 1: c_skip
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()     # Table 1: c_out
        c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()               # Table 1: c_in
        c_noise = sigma.log() / 4                              # Table 1: c_noise
        F_x = self.net(c_in * x, c_noise.flatten(), **cond)
        D_x = c_skip * x + c_out * F_x.to(torch.float32)
        return D_x


def edm_loss(precond: nn.Module, y: torch.Tensor, cfg: EDMConfig, generator: torch.Generator | None = None,
             **cond) -> torch.Tensor:
    """E_{sigma, y, n}[ lambda(sigma) || D(y + n; sigma) - y ||^2 ] (eq. 2, Table 1 training column),
    averaged over every element."""
    y = y.to(torch.float32)
    rnd_normal = torch.randn([y.shape[0]] + [1] * (y.ndim - 1), generator=generator, device=y.device)
    sigma = (rnd_normal * cfg.P_std + cfg.P_mean).exp()                              # Table 1: p_train
    weight = (sigma ** 2 + cfg.sigma_data ** 2) / (sigma * cfg.sigma_data) ** 2      # Table 1: lambda(sigma)
    n = torch.randn(y.shape, generator=generator, device=y.device) * sigma           # n ~ N(0, sigma^2 I)
    D_yn = precond(y + n, sigma.flatten(), **cond)
    loss = weight * ((D_yn - y) ** 2)
    return loss.mean()


def edm_sigmas(cfg: EDMConfig, device: torch.device | str | None = None) -> torch.Tensor:
    """Time steps t_0 = sigma_max > ... > t_{N-1} = sigma_min, t_N = 0 (eq. 5), float32, (num_steps + 1,)."""
    step_indices = torch.arange(cfg.num_steps, dtype=torch.float64)
    t_steps = (cfg.sigma_max ** (1 / cfg.rho) + step_indices / max(cfg.num_steps - 1, 1)
               * (cfg.sigma_min ** (1 / cfg.rho) - cfg.sigma_max ** (1 / cfg.rho))) ** cfg.rho
    t_steps = torch.cat([t_steps, torch.zeros_like(t_steps[:1])])  # t_N = 0
    return t_steps.to(device=device, dtype=torch.float32)


def _device_of(precond: nn.Module, generator: torch.Generator | None, cond: dict) -> torch.device:
    if generator is not None:
        return generator.device
    for p in precond.parameters():
        return p.device
    for value in cond.values():
        if torch.is_tensor(value):
            return value.device
    return torch.device("cpu")


@torch.no_grad()
def heun_sample(precond: nn.Module, shape, cfg: EDMConfig, generator: torch.Generator | None = None,
                **cond) -> torch.Tensor:
    """Algorithm 2: deterministic Heun 2nd-order sampler with optional churn (S_churn > 0), float32.
    Returns x_N, a sample of shape `shape` from the distribution D denoises towards."""
    device = _device_of(precond, generator, cond)
    t_steps = edm_sigmas(cfg, device).tolist()  # python floats: no device sync inside the loop
    batch = shape[0]

    def D(x, t):
        return precond(x, torch.full((batch,), t, device=device), **cond).to(torch.float32)

    x_next = torch.randn(shape, generator=generator, device=device) * t_steps[0]  # x_0 ~ N(0, t_0^2 I)
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):        # i = 0, ..., N-1
        x_cur = x_next
        # Increase noise temporarily: gamma_i = min(S_churn / N, sqrt(2) - 1) if t_i in [S_min, S_max].
        gamma = min(cfg.S_churn / cfg.num_steps, math.sqrt(2) - 1) if cfg.S_min <= t_cur <= cfg.S_max else 0.0
        t_hat = t_cur + gamma * t_cur                                                # t_hat_i = t_i + gamma_i t_i
        x_hat = x_cur
        if gamma > 0:                                                                # x_hat_i = x_i + sqrt(t_hat^2 - t^2) eps
            eps = torch.randn(shape, generator=generator, device=device) * cfg.S_noise
            x_hat = x_cur + math.sqrt(t_hat ** 2 - t_cur ** 2) * eps
        # Euler step.
        d_cur = (x_hat - D(x_hat, t_hat)) / t_hat                                    # d_i = (x_hat - D(x_hat; t_hat)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur                                    # x_{i+1} = x_hat + (t_{i+1} - t_hat) d_i
        # Apply 2nd order correction (skipped when t_{i+1} = 0).
        if i < cfg.num_steps - 1:
            d_prime = (x_next - D(x_next, t_next)) / t_next                          # d'_i
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)        # trapezoidal rule
    return x_next
