"""The VQ-VAE training loss without a perceptual term: L1 reconstruction + the quantiser's commitment loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from disyre_monai.utils import check_number


class VQVAELoss(torch.nn.Module):
    """``L1(reconstruction, target) + quantization_weight * quantization_loss`` for MONAI's ``VQVAE``.

    MONAI's ``VQVAE.forward`` returns ``(reconstruction, quantization_loss)`` (the EMA quantiser's commitment
    term); this loss takes that pair as the prediction, as MONAI's VQ-VAE tutorials do. The perceptual and
    adversarial terms of those tutorials are left out: MONAI's ``PerceptualLoss`` downloads pretrained weights,
    which fails offline.

    Args:
        quantization_weight: weight of the quantisation loss (MONAI tutorials: 1).

    Shapes:
        ``forward((reconstruction, quantization_loss), target)``: reconstruction and target ``(N, C, *spatial)``,
        quantization_loss a scalar tensor; returns a scalar tensor.
    """

    def __init__(self, quantization_weight: float = 1.0) -> None:
        super().__init__()
        self.quantization_weight = check_number(type(self).__name__, "quantization_weight", quantization_weight, 0.0)

    def forward(self, prediction: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if not isinstance(prediction, (tuple, list)) or len(prediction) != 2:
            raise ValueError(f"{type(self).__name__}: expects the (reconstruction, quantization_loss) pair that "
                             f"VQVAE.forward returns, got {type(prediction).__name__}.")
        reconstruction, quantization_loss = prediction
        if reconstruction.shape != target.shape:
            raise ValueError(f"{type(self).__name__}: reconstruction shape {tuple(reconstruction.shape)} differs from "
                             f"the target's {tuple(target.shape)}.")
        return F.l1_loss(reconstruction.float(), target.float()) + self.quantization_weight * quantization_loss.mean()
