"""The cDDPM/pDDPM denoiser: MONAI's U-Net with the released FiLM blocks and vector condition."""

import pytest
import torch
from monai.networks.nets import resnet10

from disyre_monai.networks import ConditionedDiffusionUNet, FiLMResnetBlock, ImageConditionedUNet

TINY = dict(channels=(8, 16, 16), num_res_blocks=1, norm_num_groups=4, num_head_channels=8)


def _wake_up(net):
    """MONAI zero-initialises the output and residual convolutions; give them weights so inputs matter."""
    torch.manual_seed(0)
    for name, p in net.named_parameters():
        if "conv2" in name or name.startswith("out."):
            torch.nn.init.normal_(p, std=0.1)
    return net.eval()


@pytest.mark.parametrize("merge", ["concat", "add"])
@pytest.mark.parametrize("film", [True, False])
def test_condition_reaches_the_output_in_every_form(merge, film):
    net = _wake_up(ConditionedDiffusionUNet(condition_dim=6, condition_merge=merge, scale_shift_norm=film, **TINY))
    x, t = torch.randn(2, 1, 16, 20), torch.tensor([10, 900])
    c = torch.randn(2, 6)
    out = net(x, t, c)
    assert out.shape == (2, 1, 16, 20)
    assert not torch.allclose(out, net(x, t, c + 1.0)), "the condition must change the prediction"
    assert not torch.allclose(out, net(x, t + 50, c)), "so must the timestep"
    blocks = [m for m in net.modules() if isinstance(m, FiLMResnetBlock)]
    assert bool(blocks) == film
    if film:
        emb = 2 * 4 * 8 if merge == "concat" else 4 * 8
        assert all(b.time_emb_proj.in_features == emb and b.time_emb_proj.out_features == 2 * b.out_channels
                   for b in blocks)


def test_concat_merge_keeps_time_and_condition_in_separate_halves():
    net = ConditionedDiffusionUNet(condition_dim=5, **TINY)
    t_emb = net.time_embed(torch.randn(3, 8))
    c_emb = net.class_embedding(torch.randn(3, 5))
    assert t_emb.shape == c_emb.shape == (3, 64)
    assert (t_emb[:, 32:] == 0).all() and (c_emb[:, :32] == 0).all(), "time_emb + cond_emb == [time, cond]"


def test_film_block_applies_scale_and_shift_after_the_second_norm():
    net = ConditionedDiffusionUNet(condition_dim=None, **TINY)
    block = next(m for m in net.modules() if isinstance(m, FiLMResnetBlock) and m.upsample is None
                 and m.downsample is None)
    torch.nn.init.normal_(block.conv2.conv.weight, std=0.1)
    x, emb = torch.randn(2, block.norm1.num_channels, 8, 8), torch.randn(2, block.time_emb_proj.in_features)
    h = block.conv1(torch.nn.functional.silu(block.norm1(x)))
    scale, shift = block.time_emb_proj(torch.nn.functional.silu(emb))[:, :, None, None].chunk(2, 1)
    expected = block.skip_connection(x) + block.conv2(torch.nn.functional.silu(block.norm2(h) * (1 + scale) + shift))
    assert torch.allclose(block(x, emb), expected, atol=1e-6)


def test_unconditioned_network_is_pddpm_and_ddpm():
    net = ConditionedDiffusionUNet(condition_dim=None, **TINY)
    assert net(torch.randn(1, 1, 8, 8), torch.tensor([3])).shape == (1, 1, 8, 8) and net.size_divisor == 4
    with pytest.raises(ValueError, match="no condition_dim"):
        net(torch.randn(1, 1, 8, 8), torch.tensor([3]), torch.randn(1, 4))


def test_condition_shape_is_checked():
    net = ConditionedDiffusionUNet(condition_dim=4, **TINY)
    with pytest.raises(ValueError, match=r"condition must have shape \(1, 4\), got None"):
        net(torch.randn(1, 1, 8, 8), torch.tensor([3]))
    with pytest.raises(ValueError, match="condition_merge|concat"):
        ConditionedDiffusionUNet(condition_dim=4, condition_merge="cross", **TINY)


def test_image_conditioned_unet_encodes_the_image():
    encoder = resnet10(spatial_dims=2, n_input_channels=1, num_classes=6, conv1_t_stride=2)
    net = ImageConditionedUNet(_wake_up(ConditionedDiffusionUNet(condition_dim=6, **TINY)), encoder.eval())
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([1, 2])
    assert net(x, t, x).shape == (2, 1, 32, 32) and net.in_channels == 1 and net.size_divisor == 4
    assert not torch.allclose(net(x, t, x), net(x, t, x.flip(-1)))
    with pytest.raises(ValueError, match="condition_dim"):
        ImageConditionedUNet(ConditionedDiffusionUNet(condition_dim=None, **TINY), encoder)


def test_released_defaults():
    net = ConditionedDiffusionUNet()
    assert tuple(net.block_out_channels) == (128, 256, 256) and net.condition_dim == 512
    assert net.class_embedding.module[0].in_features == 512 and net.class_embedding.module[2].out_features == 512
    assert sum(isinstance(m, FiLMResnetBlock) for m in net.modules()) > 0
