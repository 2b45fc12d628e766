import pytest
import torch
from monai.networks.nets import VQVAE

from disyre_monai.losses import VQVAELoss


def test_l1_plus_weighted_quantization_loss():
    recon, target, q = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5), torch.tensor(0.2)
    assert float(VQVAELoss()((recon, q), target)) == pytest.approx(0.7)
    assert float(VQVAELoss(quantization_weight=0.5)((recon, q), target)) == pytest.approx(0.6)


def test_takes_monai_vqvae_output_and_rejects_a_plain_tensor():
    net = VQVAE(2, 1, 1, channels=(8, 8), num_res_channels=8, num_res_layers=1, num_embeddings=4, embedding_dim=2,
                downsample_parameters=((2, 4, 1, 1),) * 2, upsample_parameters=((2, 4, 1, 1, 0),) * 2)
    x = torch.rand(2, 1, 16, 16)
    loss = VQVAELoss()(net(x), x)
    loss.backward()
    assert loss.ndim == 0 and next(net.parameters()).grad is not None
    with pytest.raises(ValueError, match="VQVAELoss: expects the"):
        VQVAELoss()(x, x)
