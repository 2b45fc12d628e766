"""Anomaly maps of the diffusion baselines of Behrendt et al.: cDDPM, pDDPM and a plain DDPM.

All three noise the input slice to a timestep ``t`` with the forward process, let the network predict the
clean slice ``x0`` in ONE step, and score ``|x - x0_hat|``. They differ in what the network sees:

- :class:`CDDPMScorer`: the condition encoder sees the clean input; three noise levels (t = 250, 500, 750 in
  the released 1-based labels, i.e. indices 249, 499, 749) are averaged (``noise_ensemble: True`` in
  ``configs/experiment/cDDPM/DDPM_cond_spark_2D.yaml``, ``step_ensemble`` default in ``src/models/DDPM_2D.py``
  of FinnBehrendt/Conditioned-Diffusion-Models-UAD@c5904a7).
- :class:`PDDPMScorer`: only one cell of a 2 x 2 grid is noised at a time, the rest stays clean; four passes
  are stitched (``src/models/DDPM_2D_patched.py`` of FinnBehrendt/patched-Diffusion-Models-UAD@da14cd0: 48-px
  boxes on 96-px slices, ``test_timesteps`` 500, one noise field shared by the four passes).
- :class:`DDPMScorer`: the whole slice is noised, no condition (``configs/experiment/cDDPM/DDPM.yaml``:
  simplex noise, t = 500).

Released conventions kept: intensities in [0, 1] are mapped to [-1, 1] for the network and back; the
prediction is not clipped; one simplex field is shared by every slice of a volume (released: the slices of a
volume form one batch and ``gen_noise`` repeats one field over it), each volume gets a fresh field (released: a
new draw per test batch), and a new field is drawn per timestep of the ensemble. With ``slice_size`` (the
bundle sets the training slice size) a test slice is placed in the frame training cut it to, so the network
sees slices as in training and pDDPM's cells lie where training cut them (released: test and training slices
are the same 96 x 96 frame). The post-processing (mask erosion, 3D median filter, small components) is the evaluation
protocol ``behrendt`` (:mod:`disyre_monai.metrics.protocols`), not part of the map.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.schedulers import Scheduler

from disyre_monai.inferers.slices import SliceAnomalyInferer, SliceScorer
from disyre_monai.schedulers.noise import (
    DiffusionNoise,
    as_diffusion_noise,
    default_diffusion_scheduler,
    seeded_generator,
)
from disyre_monai.transforms.diffusion import cells_from_edges, check_patch_grid, grid_cells
from disyre_monai.utils import check_int


def volume_fingerprint(volume: torch.Tensor) -> int:
    """A 64-bit integer of a volume's float32 values: the per-volume key of the test noise."""
    data = volume.detach().as_subclass(torch.Tensor).float().cpu().contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def frame_padding(size: int, train_size: int, period: int) -> tuple[int, int]:
    """Padding ``(before, after)`` of one axis of a test slice that puts it in the training frame.

    Training pads a smaller slice, centred, to ``train_size`` and crops a larger one to its centre (MONAI's
    ``ResizeWithPadOrCropd``: ``(train_size - size) // 2`` before; crop start ``size // 2 - train_size // 2``). A
    smaller test slice is padded exactly as training padded it; a larger one keeps all its pixels and is padded
    to whole multiples of ``period`` around the centred training frame, so that cell edges (``period`` = cell size) fall
    where training put them.

    Args:
        size: the slice's length along the axis.
        train_size: the training slice's length along the axis.
        period: the cell size (pDDPM) or the network's size divisor.

    Returns:
        ``(before, after)`` zero padding.
    """
    if size <= train_size:
        before = (train_size - size) // 2
        return before, train_size - size - before
    before = (train_size // 2 - size // 2) % period
    return before, (-(before + size)) % period


def lattice_cells(height: int, width: int, cell: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Boolean masks ``(n, 1, height, width)`` of the cells of a lattice of ``cell``-sized boxes from (0, 0), row-major.

    A remainder at the bottom or right (padding for the network's size divisor) joins the last row or column.
    """
    rows, cols = max(height // cell[0], 1), max(width // cell[1], 1)
    return cells_from_edges(height, width, [i * cell[0] for i in range(rows)] + [height],
                            [j * cell[1] for j in range(cols)] + [width], device)


class DiffusionScorer(SliceScorer):
    """One-step diffusion reconstruction: ``score = |x - mean_k x0_hat(q(x_{t_k} | x), t_k)|`` (channel mean); run it
    with :class:`~disyre_monai.inferers.SliceAnomalyInferer` (slicing, batching, precision, the brain mask).

    Args:
        timesteps: 0-based timesteps ``t_k`` whose reconstructions are averaged (released labels minus 1).
        scheduler: the training forward process (default :func:`default_diffusion_scheduler`).
        noise: a :class:`~disyre_monai.schedulers.DiffusionNoise` or its type ("simplex", "gaussian").
        condition_on_input: call ``network(x_t, t, x)`` with the clean slice (in [0, 1]) for the condition
            encoder (cDDPM); False calls ``network(x_t, t)``.
        patch_grid: ``(rows, cols)``: noise one grid cell at a time and stitch the cells' predictions (pDDPM);
            None noises the whole slice.
        size_divisor: slices are zero-padded to a multiple of this (the U-Net's downsampling).
        slice_size: ``(H, W)`` of the training slices (centred pad or crop, as the bundle's
            ``ResizeWithPadOrCropd``): a test slice is padded into that frame (:func:`frame_padding`) and pDDPM's
            cells are ``slice_size / patch_grid`` boxes of that frame, extended by whole cells over a larger slice
            (the training geometry). None: slices are padded at the bottom/right to ``size_divisor`` and the grid
            splits the padded slice (0.3.x).
        seed: noise seed. The field of timestep ``k`` is drawn from ``(seed, k, volume)`` (shared simplex field) or
            from ``(seed, k, volume, slice)``, so maps do not depend on the batching, the call order or the device.
        noise_per_volume: True (released): ``volume`` is a fingerprint of the volume's values
            (:func:`volume_fingerprint`), so each volume gets its own field and a volume's map does not depend on
            the others scored with it. False: one field per timestep for every volume (0.3.x; ``volume`` is left out
            and ``slice`` counts over the whole call).

    Inputs in [0, 1]. With the engine's ``return_intermediates`` the extras are the averaged reconstruction
    ``(B, C, *spatial)`` (in [0, 1] units).
    """

    progress_desc = "diffusion slices"

    def __init__(
        self,
        timesteps: Sequence[int] = (499,),
        scheduler: Scheduler | None = None,
        noise: DiffusionNoise | str | None = None,
        condition_on_input: bool = False,
        patch_grid: Sequence[int] | None = None,
        size_divisor: int = 4,
        slice_size: Sequence[int] | None = None,
        seed: int = 0,
        noise_per_volume: bool = True,
    ) -> None:
        name = type(self).__name__
        self.scheduler = scheduler or default_diffusion_scheduler()
        last = int(self.scheduler.num_train_timesteps) - 1
        self.timesteps = [check_int(name, "timesteps", t, 0, last) for t in timesteps]
        if not self.timesteps:
            raise ValueError(f"{name}: timesteps must name at least one timestep in [0, {last}].")
        self.noise = as_diffusion_noise(noise)
        self.condition_on_input = bool(condition_on_input)
        self.patch_grid = check_patch_grid(name, patch_grid)
        self.size_divisor = check_int(name, "size_divisor", size_divisor, 1, 4096)
        self.slice_size = self._check_slice_size(name, slice_size)
        self.seed = check_int(name, "seed", seed, 0)
        self.noise_per_volume = bool(noise_per_volume)
        self._volume_keys: list[int] | None = None
        self._slices_per_volume = 1

    def _check_slice_size(self, name: str, slice_size: Sequence[int] | None) -> tuple[int, int] | None:
        if slice_size is None:
            return None
        size = tuple(check_int(name, "slice_size", s, 1, 65536) for s in slice_size)
        if len(size) != 2:
            raise ValueError(f"{name}: slice_size must be (H, W), got {slice_size!r}.")
        grid = self.patch_grid or (1, 1)
        for s, g in zip(size, grid):
            if s % g or (s // g) % self.size_divisor:
                raise ValueError(f"{name}: slice_size {size} must split into patch_grid {grid} cells whose sides are "
                                 f"multiples of size_divisor {self.size_divisor}.")
        return size

    @property
    def cell_size(self) -> tuple[int, int] | None:
        """Side lengths of pDDPM's cells in the training frame (None without ``slice_size`` or a grid)."""
        if self.slice_size is None or self.patch_grid is None:
            return None
        return self.slice_size[0] // self.patch_grid[0], self.slice_size[1] // self.patch_grid[1]

    def slice_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Zero padding ``(top, bottom, left, right)`` of a ``height x width`` test slice (see ``slice_size``)."""
        if self.slice_size is None:
            return 0, (-height) % self.size_divisor, 0, (-width) % self.size_divisor
        period = self.cell_size or (self.size_divisor, self.size_divisor)
        top, bottom = frame_padding(height, self.slice_size[0], period[0])
        left, right = frame_padding(width, self.slice_size[1], period[1])
        bottom += (-(top + height + bottom)) % self.size_divisor
        right += (-(left + width + right)) % self.size_divisor
        return top, bottom, left, right

    def test_cells(self, height: int, width: int, device: torch.device | None = None) -> torch.Tensor | None:
        """pDDPM's cells ``(n, 1, H, W)`` on a PADDED test slice of ``height x width`` (None without a grid)."""
        if self.patch_grid is None:
            return None
        if self.cell_size is None:
            return grid_cells(height, width, self.patch_grid, device)
        return lattice_cells(height, width, self.cell_size, device)

    def begin(self, inputs: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> None:
        """Fingerprint each volume of the call (its noise fields' seed) and note its number of slices."""
        x = torch.as_tensor(inputs)
        self._volume_keys = None
        if self.noise_per_volume:
            self._volume_keys = [volume_fingerprint(x[b]) for b in range(x.shape[0])]
        self._slices_per_volume = x.shape[2 + engine.slice_axis] if x.ndim == 5 else 1

    def output_channels(self, in_channels: int) -> int:
        """The score and the averaged reconstruction of ``in_channels`` channels."""
        return 1 + in_channels

    def _draw_noise(self, k: int, x: torch.Tensor, slice_index: torch.Tensor) -> torch.Tensor:
        """Noise of timestep index ``k`` for the batch ``x`` ``(N, C, H, W)`` (``seed``, ``noise_per_volume``)."""
        shared = self.noise.noise_type == "simplex" and self.noise.shared_over_batch
        if self._volume_keys is None:
            if shared:
                return self.noise(x[:1], seeded_generator(self.seed, k)).expand_as(x)
            return torch.cat([self.noise(x[i:i + 1], seeded_generator(self.seed, k, int(s)))
                              for i, s in enumerate(slice_index.tolist())])
        volumes = (slice_index // self._slices_per_volume).tolist()
        within = (slice_index % self._slices_per_volume).tolist()
        fields: dict[int, torch.Tensor] = {}
        noise = []
        for i, (v, s) in enumerate(zip(volumes, within)):
            key = self._volume_keys[v]
            if not shared:
                noise.append(self.noise(x[i:i + 1], seeded_generator(self.seed, k, key, s)))
                continue
            if v not in fields:
                fields[v] = self.noise(x[:1], seeded_generator(self.seed, k, key))
            noise.append(fields[v])
        return torch.cat(noise)

    def _predict(self, network: Callable, x_t: torch.Tensor, t: int, clean: torch.Tensor,
                 engine: SliceAnomalyInferer) -> torch.Tensor:
        """``x0_hat`` in [-1, 1] units from ``x_t`` at timestep ``t``."""
        timesteps = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        with engine.autocast(x_t.device):
            out = network(x_t, timesteps, clean) if self.condition_on_input else network(x_t, timesteps)
        return out.float()

    def score(self, x: torch.Tensor, fg: torch.Tensor, network: Callable, engine: SliceAnomalyInferer) -> torch.Tensor:
        """Score + averaged reconstruction ``(N, 1 + C, H, W)`` of slices ``x`` ``(N, C, H, W)``."""
        h, w = x.shape[2:]
        top, bottom, left, right = self.slice_padding(h, w)
        x = F.pad(x, (left, right, top, bottom))
        x0 = 2.0 * x - 1.0
        cells = self.test_cells(*x.shape[2:], device=x.device)
        reco = torch.zeros_like(x)
        for k, t in enumerate(self.timesteps):
            noise = self._draw_noise(k, x, engine.slice_index)
            x_t = self.scheduler.add_noise(x0, noise, torch.full((x.shape[0],), t, dtype=torch.long))
            if cells is None:
                pred = self._predict(network, x_t, t, x, engine)
            else:
                pred = torch.zeros_like(x0)
                for cell in cells:  # only this cell noised, the rest clean; keep the prediction in the cell
                    pred = torch.where(cell, self._predict(network, torch.where(cell, x_t, x0), t, x, engine), pred)
            reco += (pred + 1.0) / 2.0
        reco /= len(self.timesteps)
        score = (x - reco).abs().mean(1, keepdim=True)
        return torch.cat([score, reco], 1)[:, :, top:top + h, left:left + w]


class CDDPMScorer(DiffusionScorer):
    """cDDPM (Behrendt et al. 2025): condition encoder on the clean input, noise ensemble t = 250/500/750.

    Same arguments as :class:`DiffusionScorer`, with the released defaults
    ``timesteps=(249, 499, 749)``, ``condition_on_input=True``; ``network(x_t, t, x)`` as
    :class:`~disyre_monai.networks.ImageConditionedUNet`.
    """

    def __init__(self, timesteps: Sequence[int] = (249, 499, 749), condition_on_input: bool = True,
                 **kwargs) -> None:
        super().__init__(timesteps=timesteps, condition_on_input=condition_on_input, **kwargs)


class PDDPMScorer(DiffusionScorer):
    """pDDPM (Behrendt et al., MIDL 2023): a 2 x 2 grid, one cell noised per pass, four passes stitched, t = 500.

    Same arguments as :class:`DiffusionScorer`, with the released defaults ``timesteps=(499,)``,
    ``patch_grid=(2, 2)``; ``network(x_t, t)`` unconditioned. (The cDDPM paper's "pDDPM (ens)" row averages
    t = 250/500/750: ``timesteps=(249, 499, 749)``.)
    """

    def __init__(self, timesteps: Sequence[int] = (499,), patch_grid: Sequence[int] | None = (2, 2),
                 **kwargs) -> None:
        super().__init__(timesteps=timesteps, patch_grid=patch_grid, **kwargs)


class DDPMScorer(DiffusionScorer):
    """Plain DDPM reconstruction (the released ``DDPM.yaml``): the whole slice noised at t = 500, no condition.

    Same arguments as :class:`DiffusionScorer`; ``noise="gaussian"`` gives the classic
    Gaussian-noise DDPM, the default is the released simplex noise.
    """
