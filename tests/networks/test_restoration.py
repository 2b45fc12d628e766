import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from disyre_monai.networks import PRESETS, DisyreUNet


def _params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("preset, millions, divisor", [("paper", 26.3, 32), ("small", 0.26, 8)])
def test_preset_sizes(preset, millions, divisor):
    net = DisyreUNet(preset=preset)
    assert _params(net) / 1e6 == pytest.approx(millions, abs=0.01)
    assert net.size_divisor == divisor


@pytest.mark.parametrize("spatial_dims, shape", [(2, (3, 1, 32, 48)), (3, (2, 1, 16, 16, 8))])
def test_forward_restores_image_shape(spatial_dims, shape):
    net = DisyreUNet(spatial_dims, preset="small").eval()
    out = net(torch.rand(shape), torch.randint(0, 100, (shape[0],)))
    assert out.shape == shape


def test_overrides_and_state_dict_of_plain_monai_unet():
    net = DisyreUNet(preset="small", channels=(8, 16, 16, 16))
    plain = DiffusionModelUNet(2, 1, 1, **{**PRESETS["small"], "channels": (8, 16, 16, 16)})
    plain.load_state_dict(net.state_dict())  # same keys and shapes: checkpoints are interchangeable
    x, t = torch.rand(1, 1, 16, 16), torch.tensor([3])
    assert torch.allclose(plain.eval()(x, t), net.eval()(x, t))


def test_unknown_preset():
    with pytest.raises(ValueError, match="tiny"):
        DisyreUNet(preset="tiny")
