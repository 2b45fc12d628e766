"""Per-sample random draws of the diffusion baselines' training step (cDDPM, pDDPM, DDPM).

The noising itself runs in :class:`~disyre_monai.engines.diffusion.DiffusionTrainingPrepareBatch` (on the
training device, one simplex field per batch as released); this transform only draws, per sample, what that
step needs: the timestep, the seed of the noise field and, for pDDPM, the grid cell to noise. Drawn in the data
pipeline through ``self.R``, they follow the pipeline's seeding: the bundle's training stream seeds every
sample from (seed, position), so a resumed run draws the same timesteps and noise, and a fixed validation set
sees the same noise at every validation.

There is no array twin: the transform adds entries and changes no array.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.transforms import Randomizable, Transform

from disyre_monai.utils import check_int

#: entries written by :class:`RandDiffusionDrawd` and read by the training step
TIMESTEP_KEY, NOISE_SEED_KEY, CELL_KEY = "timestep", "noise_seed", "noise_cell"


def check_patch_grid(owner: str, patch_grid: Sequence[int] | None) -> tuple[int, int] | None:
    """``patch_grid`` as ``(rows, cols)`` (each in [1, 64]), or None; a clear error naming ``owner`` otherwise."""
    if patch_grid is None:
        return None
    grid = tuple(check_int(owner, "patch_grid", g, 1, 64) for g in patch_grid)
    if len(grid) != 2:
        raise ValueError(f"{owner}: patch_grid must be (rows, cols), got {patch_grid!r}.")
    return grid


def cells_from_edges(height: int, width: int, row_edges: Sequence[int], col_edges: Sequence[int],
                     device: torch.device | None = None) -> torch.Tensor:
    """Boolean masks ``(rows * cols, 1, height, width)`` of the boxes between consecutive edges (row-major)."""
    rows, cols = len(row_edges) - 1, len(col_edges) - 1
    cells = torch.zeros(rows * cols, 1, height, width, dtype=torch.bool, device=device)
    for i in range(rows):
        for j in range(cols):
            cells[i * cols + j, :, row_edges[i]:row_edges[i + 1], col_edges[j]:col_edges[j + 1]] = True
    return cells


def grid_cells(height: int, width: int, grid: Sequence[int], device: torch.device | None = None) -> torch.Tensor:
    """Boolean masks ``(rows * cols, 1, height, width)`` of the cells of a ``rows x cols`` grid (row-major).

    Cell edges are ``round(i * size / n)``, so equal cells when the size divides (released pDDPM: 48-px boxes on
    96-px slices).
    """
    rows, cols = (int(g) for g in grid)
    return cells_from_edges(height, width, [round(i * height / rows) for i in range(rows + 1)],
                            [round(j * width / cols) for j in range(cols + 1)], device)


class RandDiffusionDrawd(Randomizable, Transform):
    """Draw ``t`` uniform in ``[0, num_train_timesteps)``, a 31-bit noise seed and (with a grid) a cell index.

    Args:
        num_train_timesteps: ``T`` of the forward process (released: 1000).
        patch_grid: ``(rows, cols)`` of pDDPM's grid (released: (2, 2)); a cell index in ``[0, rows * cols)`` is
            drawn (row-major, as :func:`grid_cells`). None for cDDPM and DDPM.
        timestep_key, noise_seed_key, cell_key: names of the entries written.

    Call:
        ``transform(data)`` returns a copy of the dictionary with ``timestep_key`` (int), ``noise_seed_key`` (int)
        and, with cells, ``cell_key`` (int) added.
    """

    def __init__(self, num_train_timesteps: int = 1000, patch_grid: Sequence[int] | None = None,
                 timestep_key: str = TIMESTEP_KEY, noise_seed_key: str = NOISE_SEED_KEY,
                 cell_key: str = CELL_KEY) -> None:
        name = type(self).__name__
        self.num_train_timesteps = check_int(name, "num_train_timesteps", num_train_timesteps, 1)
        grid = check_patch_grid(name, patch_grid)
        self.num_cells = 0 if grid is None else grid[0] * grid[1]
        self.timestep_key, self.noise_seed_key, self.cell_key = timestep_key, noise_seed_key, cell_key
        self.draw: dict[str, int] = {}

    def randomize(self, data: Any = None) -> None:
        self.draw = {self.timestep_key: int(self.R.randint(0, self.num_train_timesteps)),
                     self.noise_seed_key: int(self.R.randint(0, 2**31 - 1))}
        if self.num_cells:
            self.draw[self.cell_key] = int(self.R.randint(0, self.num_cells))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.randomize()
        return {**dict(data), **self.draw}


RandDiffusionDrawD = RandDiffusionDrawDict = RandDiffusionDrawd
