"""The DISYRE severity schedule and the cold-diffusion restoration step.

Convention (used by training, multi-step restoration and single-step ensembles alike):
**the timestep grows with the severity**. ``t = 0`` is the weakest corruption and ``t = T - 1`` the
strongest, as in ordinary diffusion models. The severity table is the released code's
``sqrt(cumprod(1 - beta))`` with linear betas, read in reverse::

    severity(t) = sqrt(abar[T - 1 - t]),   abar = cumprod(1 - linspace(beta_start, beta_end, T))

so the set of severities is exactly the released one (0.0045 ... 0.9995 for the defaults) and only the
labels are reversed: our ``t`` is the released ``T - 1 - t``. Every component asks this class for
``severity(t)``; there is no second table, which makes the released code's flipped-table defect (network
conditioned on one severity, update assuming another) impossible here.

Inference severities (``inference_timesteps``). The released code (diffusers "trailing" spacing) labels the
K inference steps ``round(T - k T / K) - 1``, e.g. [99, 74, 49, 24] for K = 4, in ITS convention, where they
condition the network on the weak-to-moderate severities {0.0045, 0.051, 0.272, 0.727} (K = 5:
{0.0045, 0.033, 0.15, 0.44, 0.82}). ``spacing="released"`` (default) gives those same severities in our
convention, strongest first: [75, 50, 25, 0] (K = 5: [80, 60, 40, 20, 0]). ``spacing="trailing"`` gives the
same labels read in our convention, [99, 74, 49, 24], i.e. the four STRONGEST severities
{0.9995, 0.708, 0.258, 0.047}: a different method, kept as an option.

Multi-step restoration (DISYRE v1) in the released code visits the labels [99, 74, 49, 24] in that order, so
its network is conditioned on 0.0045, 0.051, 0.272, 0.727 (weakest first) while its update, reading the
flipped table, assumes 0.9995, 0.708, 0.258, 0.047. With the defect fixed, the default here conditions the
network on the released severities, strongest first (0.727 -> 0.272 -> 0.051 -> 0.0045 -> 0), and the update
uses the same severities.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import look_up_option

from disyre_monai.utils import check_int, check_number

#: inference timestep spacings of :meth:`DisyreScheduler.inference_timesteps`.
INFERENCE_SPACINGS = ("released", "trailing")


class DisyreScheduler:
    """Severity <-> timestep mapping, inference timestep sets and the multi-step update.

    Args:
        num_train_timesteps: number of severity levels ``T`` (released: 100).
        beta_start: first beta of the linear schedule (released: 1e-3).
        beta_end: last beta of the linear schedule (released: 0.2).

    Example:
        >>> s = DisyreScheduler()
        >>> int(s.timestep(torch.tensor(0.5)))  # nearest severity level
        63
        >>> s.inference_timesteps(4).tolist()  # the released severities 0.727, 0.272, 0.051, 0.0045
        [75, 50, 25, 0]
        >>> s.inference_timesteps(4, spacing="trailing").tolist()  # the four strongest severities
        [99, 74, 49, 24]
    """

    def __init__(self, num_train_timesteps: int = 100, beta_start: float = 1e-3, beta_end: float = 0.2) -> None:
        name = type(self).__name__
        self.num_train_timesteps = check_int(name, "num_train_timesteps", num_train_timesteps, 2, 100_000)
        beta_start = check_number(name, "beta_start", beta_start, 0.0, 1.0)
        beta_end = check_number(name, "beta_end", beta_end, beta_start, 1.0)
        if beta_end >= 1.0:
            raise ValueError(f"{name}: beta_end must be in [beta_start, 1), got {beta_end}.")
        betas = torch.linspace(beta_start, beta_end, self.num_train_timesteps, dtype=torch.float64)
        released_table = torch.cumprod(1.0 - betas, dim=0).sqrt()
        self.severities = released_table.flip(0).float()  # severities[t], increasing with t

    def severity(self, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Severity in (0, 1] of each timestep. Shape: same as ``timesteps``."""
        t = torch.as_tensor(timesteps)
        self._check_timesteps(t)
        return self.severities.to(t.device)[t.long()]

    def timestep(self, severity: torch.Tensor | float) -> torch.Tensor:
        """Nearest timestep (long) of each severity in [0, 1]. Shape: same as ``severity``."""
        sev = torch.as_tensor(severity, dtype=torch.float32)
        if not torch.isfinite(sev).all() or (sev < 0).any() or (sev > 1).any():
            raise ValueError(f"{type(self).__name__}: severity must be in [0, 1], got {sev.tolist()}.")
        table = self.severities.to(sev.device)
        return (sev[..., None] - table).abs().argmin(dim=-1)

    def inference_timesteps(
        self, num_steps: int, start_timestep: int | None = None, spacing: str = "released"
    ) -> torch.Tensor:
        """Descending inference timesteps (strongest severity first).

        - ``"released"`` (default): the severities the released DISYRE code conditions its network on, in our
          convention ``T - round(T - k T / K)`` for ``k = K - 1 ... 0``. T=100: 4 steps -> [75, 50, 25, 0],
          5 steps -> [80, 60, 40, 20, 0]. ``start_timestep`` does not apply.
        - ``"trailing"``: ``num_steps`` evenly spaced levels ending at ``start_timestep`` (default ``T - 1``),
          step ``(start_timestep + 1) / num_steps``. T=100, 4 steps -> [99, 74, 49, 24] (the strongest).

        Returns:
            long tensor of shape ``(num_steps,)``.
        """
        name = type(self).__name__
        spacing = look_up_option(spacing, INFERENCE_SPACINGS)
        n = self.num_train_timesteps
        if spacing == "released":
            if start_timestep is not None:
                raise ValueError(f"{name}: start_timestep applies to spacing='trailing' only, got {start_timestep} "
                                 "with spacing='released'.")
            num_steps = check_int(name, "num_steps", num_steps, 1, n)
            labels = np.round(n - np.arange(num_steps) * n / num_steps).astype(np.int64) - 1  # released labels
            return torch.from_numpy(n - 1 - labels[::-1].copy())
        start = n - 1 if start_timestep is None else start_timestep
        start = check_int(name, "start_timestep", start, 0, n - 1)
        num_steps = check_int(name, "num_steps", num_steps, 1, start + 1)
        stride = (start + 1) / num_steps
        return torch.tensor([round(start + 1 - k * stride) - 1 for k in range(num_steps)], dtype=torch.long)

    def step(self, restored: torch.Tensor, timestep: int, current: torch.Tensor, next_timestep: int) -> torch.Tensor:
        """One cold-diffusion restoration step from severity ``a_t`` to ``a_next``.

        ``x_next = x_t + (1 - a_next / a_t) * (x0_hat - x_t)``; ``next_timestep = -1`` means severity 0, i.e.
        the step lands on ``x0_hat``. Both severities come from :meth:`severity`, the same table that
        conditions the network.

        Args:
            restored: the network's clean estimate ``x0_hat``, shape ``(N, C, *spatial)``.
            timestep: the current timestep ``t``.
            current: the current state ``x_t``, same shape.
            next_timestep: the next (smaller) timestep, or -1.
        """
        if next_timestep >= timestep:
            raise ValueError(
                f"{type(self).__name__}: next_timestep must be < timestep ({timestep}), got {next_timestep}."
            )
        a_t = self.severity(timestep)
        a_next = self.severity(next_timestep) if next_timestep >= 0 else torch.zeros(())
        return current + (1.0 - a_next / a_t).to(current) * (restored - current)

    def _check_timesteps(self, t: torch.Tensor) -> None:
        if t.is_floating_point() and not torch.equal(t, t.round()):
            raise ValueError(f"{type(self).__name__}: timesteps must be integers, got {t.tolist()}.")
        if (t < 0).any() or (t >= self.num_train_timesteps).any():
            raise ValueError(
                f"{type(self).__name__}: timesteps must be in [0, {self.num_train_timesteps - 1}], got {t.tolist()}."
            )
