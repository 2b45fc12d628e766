"""Small ignite handlers for the DISYRE trainer."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

from disyre_monai.utils import check_number


class GradientClipping:
    """Clip the global gradient norm after every backward pass, before the optimiser step.

    Attach to a MONAI ``SupervisedTrainer`` (it fires ``BACKWARD_COMPLETED`` between the two). With AMP
    gradient scaling, the gradients are unscaled first so the norm is measured in true units.

    Args:
        max_norm: maximum L2 norm of all gradients (released DISYRE: 1.0); None: no clipping (released cDDPM,
            pDDPM and DDPM), the handler attaches nothing.
    """

    def __init__(self, max_norm: float | None = 1.0) -> None:
        self.max_norm = None if max_norm is None else check_number(type(self).__name__, "max_norm", max_norm, 1e-12)

    def attach(self, engine: Engine) -> None:
        if self.max_norm is None:
            return
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None and scaler.is_enabled():
            scaler.unscale_(engine.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.network.parameters(), self.max_norm)
