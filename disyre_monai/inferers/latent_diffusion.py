"""Anomaly maps of the latent-diffusion detector of Pinaya et al. (MICCAI 2022): KL mask, masked healing, residual.

For a batch of 2D slices ``x`` and a :class:`~disyre_monai.networks.LatentDiffusionModel`:

1. ``z0``: the scaled quantised VQ-VAE latents of ``x``.
2. KL map: for every timestep ``t`` of ``kl_timesteps`` (``t = 0`` is excluded: MONAI's term at 0 is a
   discretised likelihood that assumes 8-bit pixels), ``z_t ~ q(z_t | z0)`` and the per-element
   ``KL(q(z_{t-1} | z_t, z0) || p(z_{t-1} | z_t))`` of the DDPM (MONAI ``DiffusionInferer.get_likelihood``),
   averaged over latent channels and timesteps: one value per latent position.
3. Latent anomaly mask ``m = KL > kl_threshold`` (the threshold is calibrated on healthy validation data by
   :func:`calibrate_kl_threshold`, see there).
4. Healing: ``z0`` is noised to ``heal_start`` and denoised with strided deterministic DDIM steps; after every
   step the latents outside ``m`` are replaced by ``z0`` forward-noised to the new timestep (clean ``z0`` after
   the last step), so only the masked positions are regenerated.
5. The healed latents are decoded to ``x_hat``; the map is ``|x - x_hat|`` (channel mean) times ``m``
   upsampled to the image grid and Gaussian-smoothed. The image-level score is the aggregated KL
   (:func:`aggregated_kl`).

Which of these choices come from the paper, from a re-implementation or from us: ``bundle/docs/README.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.networks.layers import GaussianFilter
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from disyre_monai.inferers.slices import SliceAnomalyInferer, SliceScorer
from disyre_monai.schedulers.noise import seeded_generator
from disyre_monai.utils import check_int, check_number, source_name

__all__ = ["LDMScorer", "aggregated_kl", "calibrate_kl_threshold", "heal_timesteps", "latent_kl"]

#: KL timesteps of the default mask (ours: eight evenly spaced steps of the first 40% of a T = 1000 chain).
DEFAULT_KL_TIMESTEPS = (50, 100, 150, 200, 250, 300, 350, 400)


def _ddim_stride(num_train_timesteps: int, wanted: int) -> int:
    """The smallest stride ``>= wanted`` that MONAI's DDIM step can take (it steps by ``T // (T // stride)``)."""
    for stride in range(max(wanted, 1), num_train_timesteps + 1):
        if num_train_timesteps // (num_train_timesteps // stride) == stride:
            return stride
    return num_train_timesteps


def heal_timesteps(num_train_timesteps: int, start: int, num_steps: int) -> list[int]:
    """The DDIM timesteps of the healing, from ``start`` down to the last one before the clean latents.

    The stride is the smallest one MONAI's ``DDIMScheduler`` can take that is at least
    ``ceil((start + 1) / num_steps)``, so at most ``num_steps`` steps are taken; e.g. T = 1000, start 300,
    10 steps: ``[300, 269, ..., 21]`` (stride 31), each step going ``t -> t - 31``, the last to clean latents.
    """
    stride = _ddim_stride(num_train_timesteps, math.ceil((start + 1) / num_steps))
    return list(range(start, -1, -stride))


def latent_kl(
    unet: Callable, scheduler: DDPMScheduler, latents: torch.Tensor, timesteps: Sequence[int], seed: int
) -> torch.Tensor:
    """Per-element KL terms of the DDPM's variational bound at ``timesteps``, seeded.

    Args:
        unet: the noise-predicting U-Net, ``unet(x, timesteps=...)``.
        scheduler: the DDPM schedule the U-Net was trained with (not modified).
        latents: ``z0`` ``(N, C, h, w)``.
        timesteps: the timesteps t (each in ``[1, T - 1]``).
        seed: seeds the one noise field MONAI's ``get_likelihood`` draws for every t (the global generators are
            restored afterwards).

    Returns:
        ``(N, len(timesteps), C, h, w)`` KL terms, on ``latents``' device.
    """
    probe = DDPMScheduler(scheduler.num_train_timesteps, clip_sample=False, prediction_type=scheduler.prediction_type)
    probe.betas, probe.alphas, probe.alphas_cumprod = scheduler.betas, scheduler.alphas, scheduler.alphas_cumprod
    probe.timesteps = torch.as_tensor(list(timesteps), dtype=torch.long)
    devices = list(range(torch.cuda.device_count())) if latents.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _, terms = DiffusionInferer(probe).get_likelihood(
            latents, unet, scheduler=probe, save_intermediates=True, verbose=False
        )
    return torch.stack([k.to(latents.device) for k in terms], 1)


def aggregated_kl(kl_map: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Image-level score: the mean of the KL map over the brain, per input.

    Args:
        kl_map: ``(B, 1, *spatial)``, the ``"kl"`` extra of :class:`LDMScorer` (KL averaged over latent
            channels and timesteps, on the image grid).
        mask: ``(B, 1, *spatial)`` brain mask (None: every voxel with a non-zero KL, i.e. scored slices).

    Returns:
        ``(B,)`` float32 scores.
    """
    kl = torch.as_tensor(kl_map).float()
    region = (kl != 0) if mask is None else (torch.as_tensor(mask) > 0).to(kl.device)
    total = (kl * region).flatten(1).sum(1)
    return total / region.flatten(1).sum(1).clamp_min(1)


class LDMScorer(SliceScorer):
    """Latent-diffusion scores of a batch of 2D slices with a :class:`~disyre_monai.networks.LatentDiffusionModel`;
    run it with :class:`~disyre_monai.inferers.SliceAnomalyInferer` (slicing, empty slices skipped, batching,
    precision, brain mask applied, MetaTensor in -> MetaTensor out); see the module docstring for the method. Slices are
    zero-padded to ``size_divisor`` (default: the network's). Every draw is a pure function of ``seed``: the
    healing noise of a slice of ``(seed, slice position)``, the KL noise field, which MONAI's
    ``get_likelihood`` draws for a whole batch, of ``(seed, positions of the batch's slices)``. So the same
    input, seed and ``slice_batch_size`` give the same map (another batch size changes the KL noise only).

    Args:
        kl_timesteps: timesteps whose KL terms are averaged (each in ``[1, T - 1]``; t = 0 is refused).
        kl_threshold: latent positions whose mean KL exceeds this are healed (None: the network's calibrated
            ``kl_threshold``).
        heal_start: timestep the latents are noised to before healing.
        heal_steps: at most this many deterministic DDIM steps from ``heal_start`` to clean latents (see
            :func:`heal_timesteps`).
        requantize: snap the healed latents to the VQ-VAE codebook before decoding (MONAI's
            ``decode_stage_2_outputs``); False decodes them as they are.
        mask_sigma: sigma (pixels) of the Gaussian smoothing of the upsampled mask (None: half the
            autoencoder's downsampling factor; 0: no smoothing).
        seed: seed of every draw.
        size_divisor: slices are zero-padded to a multiple of this (None: ``network.size_divisor``).

    Inputs in the intensity range the network was trained on. With the engine's ``return_intermediates`` the
    extras are ``(B, 2 + C, *spatial)``: channel 0 the KL map (latent KL averaged over channels and timesteps,
    nearest-upsampled), channel 1 the smoothed upsampled mask, then the healed reconstruction ``x_hat`` (C channels).
    """

    progress_desc = "LDM slices"

    def __init__(
        self,
        kl_timesteps: Sequence[int] = DEFAULT_KL_TIMESTEPS,
        kl_threshold: float | None = None,
        heal_start: int = 300,
        heal_steps: int = 10,
        requantize: bool = True,
        mask_sigma: float | None = None,
        seed: int = 0,
        size_divisor: int | None = None,
    ) -> None:
        name = type(self).__name__
        steps = [check_int(name, "kl_timesteps", t, 1, 100_000) for t in kl_timesteps]
        if not steps:
            raise ValueError(f"{name}: kl_timesteps must hold at least one timestep in [1, T - 1], got none.")
        self.kl_timesteps = tuple(steps)
        self.kl_threshold = None if kl_threshold is None else check_number(name, "kl_threshold", kl_threshold)
        self.heal_start = check_int(name, "heal_start", heal_start, 1, 100_000)
        self.heal_steps = check_int(name, "heal_steps", heal_steps, 1, 100_000)
        self.requantize = bool(requantize)
        self.mask_sigma = None if mask_sigma is None else check_number(name, "mask_sigma", mask_sigma, 0.0, 1000.0)
        self.seed = check_int(name, "seed", seed, 0, 2**63 - 1)
        self.size_divisor = None if size_divisor is None else check_int(name, "size_divisor", size_divisor, 1, 4096)

    def begin(self, inputs: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> None:
        """Check that ``network`` is a calibrated latent-diffusion model whose schedule holds the timesteps."""
        self._check_network(network, source_name(inputs, "inputs"))

    def output_channels(self, in_channels: int) -> int:
        """The score, the KL map, the mask and the ``in_channels`` channels of the healed reconstruction."""
        return 3 + in_channels

    def _check_network(self, network: Callable, source: str) -> None:
        net = getattr(network, "module", network)
        name = f"{type(self).__name__}: {source}"
        missing = [a for a in ("encode", "decode", "unet", "scheduler", "kl_threshold") if not hasattr(net, a)]
        if missing:
            raise TypeError(f"{name}: the network must be a LatentDiffusionModel (encode, decode, unet, scheduler, "
                            f"kl_threshold); {type(net).__name__} lacks {missing}.")
        last = net.scheduler.num_train_timesteps - 1
        bad = [t for t in (*self.kl_timesteps, self.heal_start) if t > last]
        if bad:
            raise ValueError(f"{name}: kl_timesteps and heal_start must be in [1, {last}] for a network trained with "
                             f"T = {last + 1} steps, got {bad}.")
        if self._threshold(net) is None:
            raise ValueError(
                f"{name}: kl_threshold is not set and the network's kl_threshold is not calibrated (NaN): "
                "calibrate it on healthy validation volumes with disyre_monai.inferers.calibrate_kl_threshold "
                "(the bundle's LDM diffusion stage does it at its end) or pass kl_threshold."
            )

    def _threshold(self, net) -> float | None:
        if self.kl_threshold is not None:
            return self.kl_threshold
        value = float(net.kl_threshold)
        return None if math.isnan(value) else value

    def score(self, x: torch.Tensor, fg: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> torch.Tensor:
        """Score [+ KL map, mask, healed reconstruction] ``(N, 3 + C, H, W)`` of slices ``x`` ``(N, C, H, W)``."""
        net = getattr(network, "module", network)
        h, w = x.shape[2:]
        divisor = self.size_divisor or int(net.size_divisor)
        xp = F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor))
        positions = [int(i) for i in engine.slice_index.tolist()]
        kl_seed = seeded_generator(self.seed, 0, *positions).initial_seed()
        with engine.autocast(x.device):
            z0 = net.encode(xp).float()
            kl = latent_kl(net.unet, net.scheduler, z0, self.kl_timesteps, kl_seed).float().mean((1, 2))[:, None]
            latent_mask = (kl > self._threshold(net)).float()
            healed = self._heal(net, z0, latent_mask, positions) if latent_mask.any() else z0
            restored = net.decode(healed, self.requantize).float() if (
                latent_mask.any() or engine.return_intermediates) else xp
        up_mask = self._smooth(F.interpolate(latent_mask, size=xp.shape[2:], mode="nearest"), net)
        score = (xp - restored).abs().mean(1, keepdim=True) * up_mask
        if not engine.return_intermediates:
            return score[:, :, :h, :w]
        up_kl = F.interpolate(kl, size=xp.shape[2:], mode="nearest")
        return torch.cat([score, up_kl, up_mask, restored], 1)[:, :, :h, :w]

    def _heal(self, net, z0: torch.Tensor, latent_mask: torch.Tensor, positions: list[int]) -> torch.Tensor:
        """Regenerate the masked latents: noise to ``heal_start``, strided DDIM steps, re-impose the rest.

        The noise fields of slice ``p`` (one for ``heal_start``, one per re-imposition) come from ``(seed, 1, p)``.
        """
        ddim: DDIMScheduler = net.ddim_scheduler()
        steps = heal_timesteps(ddim.num_train_timesteps, self.heal_start, self.heal_steps)
        ddim.set_timesteps(ddim.num_train_timesteps // (steps[0] - steps[1]) if len(steps) > 1 else 1)
        stride = ddim.num_train_timesteps // ddim.num_inference_steps
        fields = torch.stack([torch.randn((len(steps) + 1, *z0.shape[1:]), generator=seeded_generator(self.seed, 1, p))
                              for p in positions], 1).to(z0.device)

        def noised(t: int, k: int) -> torch.Tensor:
            if t < 0:
                return z0
            return net.scheduler.add_noise(z0, fields[k], torch.full((z0.shape[0],), t, device=z0.device))

        z = noised(steps[0], 0)
        for k, t in enumerate(steps, start=1):
            timesteps = torch.full((z.shape[0],), t, device=z.device, dtype=torch.long)
            eps = net.unet(z, timesteps=timesteps).float()
            z, _ = ddim.step(eps, t, z)
            z = latent_mask * z + (1 - latent_mask) * noised(t - stride, k)
        return z

    def _smooth(self, mask: torch.Tensor, net) -> torch.Tensor:
        """Gaussian smoothing normalised at the image border (a mask of ones stays ones)."""
        sigma = net.downsampling / 2 if self.mask_sigma is None else self.mask_sigma
        if sigma <= 0:
            return mask
        smooth = GaussianFilter(2, sigma).to(mask.device)
        return (smooth(mask) / smooth(torch.ones_like(mask[:1])).clamp_min(1e-6)).clamp(0.0, 1.0)


@torch.no_grad()
def calibrate_kl_threshold(
    network: torch.nn.Module,
    inferer: SliceAnomalyInferer,
    cases: Iterable[Mapping],
    percentile: float = 95.0,
    image_key: str = "image",
    mask_key: str = "mask",
    max_voxels_per_case: int = 100_000,
    device: torch.device | str | None = None,
) -> float:
    """Set ``network.kl_threshold`` to a percentile of the KL map over the brain of healthy volumes.

    The KL map is the inferer's (latent KL averaged over channels and ``kl_timesteps``, on the image grid);
    from each case at most ``max_voxels_per_case`` brain voxels are drawn (seeded with the scorer's ``seed``), and
    the threshold is the ``percentile``-th percentile of the pooled values: on healthy data about
    ``100 - percentile`` % of the brain is then masked (and healed).

    Args:
        network: the :class:`~disyre_monai.networks.LatentDiffusionModel` (its ``kl_threshold`` is set).
        inferer: the inferer whose KL settings are used (not modified).
        cases: preprocessed healthy volumes, dicts with ``image_key`` ``(C, *spatial)`` and optionally
            ``mask_key`` ``(1, *spatial)``.
        percentile: in (0, 100).
        image_key: image entry of a case.
        mask_key: brain-mask entry (absent: voxels above the inferer's foreground threshold).
        max_voxels_per_case: voxels drawn per case.
        device: where the volumes go (default: the network's device).

    Returns:
        The threshold.

    Raises:
        ValueError: no case, or no brain voxel in any case.
    """
    name = "calibrate_kl_threshold"
    percentile = check_number(name, "percentile", percentile, 1e-6, 100.0 - 1e-6)
    max_voxels_per_case = check_int(name, "max_voxels_per_case", max_voxels_per_case, 1, 2**40)
    if not isinstance(getattr(inferer, "scorer", None), LDMScorer):
        raise TypeError(f"{name}: inferer must be a SliceAnomalyInferer around an LDMScorer, got "
                        f"{type(inferer).__name__}.")
    probe = copy.copy(inferer)
    probe.scorer, probe.return_intermediates = copy.copy(inferer.scorer), True
    probe.scorer.kl_threshold = math.inf
    device = torch.device(device) if device is not None else next(network.parameters()).device
    draw = torch.Generator().manual_seed(inferer.scorer.seed)
    values = []
    for case in cases:
        image = torch.as_tensor(case[image_key]).float()[None].to(device)
        brain = case.get(mask_key)
        brain = None if brain is None else torch.as_tensor(brain)[None].to(device)
        _, extras = probe(image, network, brain)
        region = (image > probe.foreground_threshold).any(1) if brain is None else brain[:, 0] > 0
        kl = extras[:, 0][region].float().cpu()
        if kl.numel() > max_voxels_per_case:
            kl = kl[torch.randperm(kl.numel(), generator=draw)[:max_voxels_per_case]]
        values.append(kl)
    if not values or not sum(v.numel() for v in values):
        raise ValueError(f"{name}: no brain voxel in the {len(values)} calibration case(s); the healthy validation "
                         "split is empty or its brain masks are empty.")
    threshold = float(np.percentile(torch.cat(values).numpy(), percentile))
    getattr(network, "module", network).kl_threshold.fill_(threshold)
    return threshold
