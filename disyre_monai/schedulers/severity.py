"""The DISYRE severity schedule and the cold-diffusion restoration step.

Convention (used by training, multi-step restoration and single-step ensembles alike):
**the timestep grows with the severity**. ``t = 0`` is the weakest corruption and ``t = T - 1`` the
strongest, as in ordinary diffusion models. The severity table is the released code's
``sqrt(cumprod(1 - beta))`` with linear betas, read in reverse::

    severity(t) = sqrt(abar[T - 1 - t]),   abar = cumprod(1 - linspace(beta_start, beta_end, T))

so the set of severities is exactly the released one (0.0045 ... 0.9995 for the defaults) and only the
labels are reversed. Every component asks this class for ``severity(t)``; there is no second table, which
makes the released code's flipped-table defect (network conditioned on one severity, update assuming
another) impossible here.
"""

from __future__ import annotations

import torch

from disyre_monai.utils import check_int, check_number


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
        >>> s.inference_timesteps(4).tolist()
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

    def inference_timesteps(self, num_steps: int, start_timestep: int | None = None) -> torch.Tensor:
        """Descending timesteps with "trailing" spacing, strongest first.

        ``num_steps`` evenly spaced levels ending at ``start_timestep`` (default ``T - 1``); the step size in
        timesteps is ``(start_timestep + 1) / num_steps``. Example: T=100, 4 steps -> [99, 74, 49, 24].

        Returns:
            long tensor of shape ``(num_steps,)``.
        """
        name = type(self).__name__
        start = self.num_train_timesteps - 1 if start_timestep is None else start_timestep
        start = check_int(name, "start_timestep", start, 0, self.num_train_timesteps - 1)
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
