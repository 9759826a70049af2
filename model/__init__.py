"""Models of DriveAnyMesh (paper 3.3-3.4): the motion VAE, the latent denoiser, and EDM."""
from model.denoiser import Denoiser, DenoiserConfig
from model.edm import EDMConfig, EDMPrecond, edm_loss, edm_sigmas, heun_sample
from model.anchors import anchor_points, farthest_point_sample
from model.vae import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig", "Denoiser", "DenoiserConfig", "EDMConfig", "EDMPrecond", "edm_loss",
           "edm_sigmas", "heun_sample", "anchor_points", "farthest_point_sample"]
