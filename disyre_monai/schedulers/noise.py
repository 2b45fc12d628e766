"""Noise of the forward diffusion process ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n``: Gaussian or 2D simplex.

Simplex noise (AnoDDPM, Wyatt et al., CVPR-W 2022; used by Behrendt et al.'s cDDPM/pDDPM) is smooth,
low-frequency noise that hides whole lesions, where Gaussian noise only hides texture. This module computes
classic 2D simplex noise (Perlin's simplex lattice, three corners per point, radial falloff ``(0.5 - r^2)^4``
times a gradient chosen by a permutation table), vectorised in torch on the tensor's device, summed over
octaves as fractal noise::

    n(x, y) = sum_{k < octaves} persistence^k * simplex(x / (frequency / 2^k), y / (frequency / 2^k))

The released code (``src/utils/generate_noise.py`` of FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7)
uses the OpenSimplex variant with octaves 6, persistence 0.8, frequency 64 (pixels of the first octave's
feature size), does not normalise the variance, and draws ONE field per call, repeated over the batch.
We match the released fields' statistics, measured on released 96 x 96 fields: one octave has standard
deviation 0.372 (ours is scaled to it), the 6-octave sum 0.60, and neighbouring pixels correlate at 0.96,
0.80, 0.48 at lags of 1, 4, 16 pixels (ours: 0.96, 0.80, 0.44). Each draw
takes a new permutation table and, per octave, a random offset of the lattice (the released code has no
offset, so its fields are 0 at pixel (0, 0); a deliberate difference that makes every pixel alike).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.networks.schedulers import DDPMScheduler
from monai.utils import look_up_option

from disyre_monai.utils import check_int, check_number

NOISE_TYPES = ("simplex", "gaussian")

_SKEW = 0.5 * (math.sqrt(3.0) - 1.0)  # input space -> simplex lattice
_UNSKEW = (3.0 - math.sqrt(3.0)) / 6.0  # simplex lattice -> input space
#: OpenSimplex's lattice is twice as coarse as the classic simplex lattice (kernel radius sqrt(2) against
#: sqrt(1/2)): coordinates are halved so that a given ``frequency`` gives the released feature size
_LATTICE_SCALE = 0.5
#: scales one octave to the released single-octave standard deviation (see the module docstring)
_OCTAVE_SCALE = 68.3
#: standard deviation of one released (OpenSimplex) octave, measured on 96 x 96 fields
RELEASED_OCTAVE_STD = 0.372


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` whose seed is a pure function of the integers ``keys``."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0]))


def _gradients(device: torch.device) -> torch.Tensor:
    """Eight unit gradient directions ``(8, 2)``, 45 degrees apart."""
    angles = torch.arange(8, device=device, dtype=torch.float32) * (math.pi / 4)
    return torch.stack([angles.cos(), angles.sin()], 1)


def _simplex_octave(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Simplex noise at points ``(x, y)`` ``(F, P)`` with one permutation table per field ``perm`` ``(F, 512)``."""
    skew = (x + y) * _SKEW
    i, j = torch.floor(x + skew), torch.floor(y + skew)
    unskew = (i + j) * _UNSKEW
    x0, y0 = x - (i - unskew), y - (j - unskew)
    upper = x0 > y0  # which of the two triangles of the rhombus holds the point
    i1, j1 = upper.long(), (~upper).long()
    corners = [(x0, y0, 0, 0), (x0 - i1 + _UNSKEW, y0 - j1 + _UNSKEW, i1, j1),
               (x0 - 1 + 2 * _UNSKEW, y0 - 1 + 2 * _UNSKEW, 1, 1)]
    ii, jj = i.long() & 255, j.long() & 255
    grads = _gradients(x.device)
    total = torch.zeros_like(x)
    for dx, dy, di, dj in corners:
        g = grads[torch.gather(perm, 1, ii + di + torch.gather(perm, 1, jj + dj)) & 7]
        falloff = (0.5 - dx * dx - dy * dy).clamp_min(0.0)
        total = total + falloff**4 * (g[..., 0] * dx + g[..., 1] * dy)
    return total * _OCTAVE_SCALE


def simplex_noise_2d(
    num_fields: int,
    height: int,
    width: int,
    octaves: int = 6,
    persistence: float = 0.8,
    frequency: float = 64.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fractal 2D simplex noise fields ``(num_fields, height, width)`` (float32, not variance-normalised).

    Args:
        num_fields: independent fields drawn.
        height, width: field size in pixels.
        octaves: octaves summed (released: 6).
        persistence: amplitude ratio of successive octaves (released: 0.8).
        frequency: feature size of the first octave in pixels; it halves at each octave (released: 64).
        generator: source of the random permutation tables and offsets (any device; None: torch's default).
        device: device of the computation and the result (default: the generator's device).

    Returns:
        the fields; with the released settings their standard deviation is about 0.6 and neighbouring pixels
        correlate at about 0.96.
    """
    name = "simplex_noise_2d"
    num_fields = check_int(name, "num_fields", num_fields, 1)
    height, width = check_int(name, "height", height, 1), check_int(name, "width", width, 1)
    octaves = check_int(name, "octaves", octaves, 1, 16)
    persistence = check_number(name, "persistence", persistence, 0.0, 1.0)
    frequency = check_number(name, "frequency", frequency, 1e-3)
    draw_device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device) if device is not None else draw_device
    keys = torch.rand(num_fields, 256, generator=generator, device=draw_device)
    perm = keys.argsort(1).to(device)
    perm = torch.cat([perm, perm], 1)  # indices up to 511 stay in the table
    offsets = (torch.rand(num_fields, octaves, 2, generator=generator, device=draw_device) * 256.0).to(device)
    rows = torch.arange(height, device=device, dtype=torch.float32)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    xx, yy = xx.reshape(1, -1), yy.reshape(1, -1)
    out = torch.zeros(num_fields, height * width, device=device)
    amplitude, scale = 1.0, float(frequency)
    for k in range(octaves):
        x = xx * (_LATTICE_SCALE / scale) + offsets[:, k, :1]
        y = yy * (_LATTICE_SCALE / scale) + offsets[:, k, 1:]
        out += amplitude * _simplex_octave(x, y, perm)
        amplitude *= persistence
        scale /= 2.0
    return out.reshape(num_fields, height, width)


class DiffusionNoise:
    """Draws the noise ``n`` of the forward process for a batch of 2D images.

    Args:
        noise_type: ``"simplex"`` (released cDDPM/pDDPM/DDPM) or ``"gaussian"`` (i.i.d. standard normal).
        octaves, persistence, frequency: simplex settings (released: 6, 0.8, 64).
        shared_over_batch: simplex only: one field for the whole batch, as released (every image and channel
            of a call gets the same field); False draws one field per image and channel.

    Call:
        ``noise(x, generator=None)`` with ``x`` ``(N, C, H, W)``: returns noise of ``x``'s shape, dtype and
        device, drawn from ``generator`` (any device; None: torch's default generator).
    """

    def __init__(self, noise_type: str = "simplex", octaves: int = 6, persistence: float = 0.8,
                 frequency: float = 64.0, shared_over_batch: bool = True) -> None:
        name = type(self).__name__
        self.noise_type = look_up_option(noise_type, NOISE_TYPES)
        self.octaves = check_int(name, "octaves", octaves, 1, 16)
        self.persistence = check_number(name, "persistence", persistence, 0.0, 1.0)
        self.frequency = check_number(name, "frequency", frequency, 1e-3)
        self.shared_over_batch = bool(shared_over_batch)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: x must be (N, C, H, W), got shape {tuple(x.shape)}.")
        draw_device = generator.device if generator is not None else torch.device("cpu")
        if self.noise_type == "gaussian":
            noise = torch.randn(x.shape, generator=generator, device=draw_device)
            return noise.to(device=x.device, dtype=x.dtype)
        n, c, h, w = x.shape
        fields = 1 if self.shared_over_batch else n * c
        noise = simplex_noise_2d(fields, h, w, self.octaves, self.persistence, self.frequency, generator, x.device)
        return noise.reshape(-1, 1, h, w).expand(n, c, h, w).reshape(n, c, h, w).to(x.dtype) \
            if self.shared_over_batch else noise.reshape(n, c, h, w).to(x.dtype)


def as_diffusion_noise(noise: DiffusionNoise | str | None) -> DiffusionNoise:
    """``noise`` itself, ``DiffusionNoise(noise)`` for a name ("simplex", "gaussian"), or released simplex."""
    if noise is None:
        return DiffusionNoise("simplex")
    return DiffusionNoise(noise) if isinstance(noise, str) else noise


def default_diffusion_scheduler() -> DDPMScheduler:
    """The released forward process of cDDPM/pDDPM/DDPM: T = 1000, cosine schedule (Nichol & Dhariwal), x0
    prediction (MONAI ``DDPMScheduler``; only ``add_noise`` is used)."""
    return DDPMScheduler(num_train_timesteps=1000, schedule="cosine", prediction_type="sample", clip_sample=False)
