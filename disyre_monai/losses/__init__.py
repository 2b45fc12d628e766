"""Losses: training objectives that MONAI and torch lack (the VQ-VAE stage of the latent-diffusion method)."""

from .vqvae import VQVAELoss

__all__ = ["VQVAELoss"]
