"""Anomaly maps of the diffusion baselines (cDDPM, pDDPM, DDPM) on the shared slice-wise contract."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.nets import resnet10

from disyre_monai.inferers import CDDPMScorer, DDPMScorer, DiffusionScorer, PDDPMScorer
from disyre_monai.networks import ConditionedDiffusionUNet, ImageConditionedUNet
from tests.helpers import slice_inferer, synthetic_brain

TINY = dict(channels=(4, 8, 8), num_res_blocks=1, norm_num_groups=4, num_head_channels=8)
INFERERS = [CDDPMScorer, PDDPMScorer, DDPMScorer]
SHAPES = [(2, 1, 24, 20), (1, 1, 20, 18, 4), (2, 2, 16, 14, 3)]


def _brain(shape):
    b, c, *spatial = shape
    return torch.from_numpy(np.stack([np.concatenate([synthetic_brain(spatial, s)] * c) for s in range(b)]))


def _network(inferer_class, in_channels=1):
    """A small real network of the method (weights woken up so that noise and condition matter)."""
    torch.manual_seed(0)
    unet = ConditionedDiffusionUNet(in_channels=in_channels, out_channels=in_channels,
                                    condition_dim=8 if inferer_class is CDDPMScorer else None, **TINY)
    for name, p in unet.named_parameters():
        if "conv2" in name or name.startswith("out."):
            torch.nn.init.normal_(p, std=0.05)
    if inferer_class is CDDPMScorer:
        encoder = resnet10(spatial_dims=2, n_input_channels=in_channels, num_classes=8, conv1_t_stride=2,
                           widen_factor=0.125)
        return ImageConditionedUNet(unet, encoder).eval()
    return unet.eval()


class Oracle(torch.nn.Module):
    """A perfect denoiser: returns the true clean slice in [-1, 1] (looked up through the inferer's slice index)."""

    def __init__(self, inferer, clean_slices):
        super().__init__()
        self.inferer, self.clean = inferer, 2.0 * clean_slices - 1.0
        self.calls = []

    def forward(self, x_t, timesteps, image=None):
        self.calls.append((x_t.clone(), timesteps.clone(), None if image is None else image.clone()))
        return self.clean[self.inferer.slice_index]


def _slices(x):
    return x if x.ndim == 4 else x.movedim(-1, 1).reshape(-1, x.shape[1], *x.shape[2:4])


@pytest.mark.parametrize("inferer_class", INFERERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_seeding_and_batching(inferer_class, shape):
    x = _brain(shape)
    net = _network(inferer_class, shape[1])
    amap = slice_inferer(inferer_class, seed=3)(x, net)
    assert amap.shape == (shape[0], 1, *shape[2:]) and amap.dtype == torch.float32 and torch.isfinite(amap).all()
    assert torch.equal(amap, slice_inferer(inferer_class, seed=3)(x, net)), "same seed, same map"
    assert not torch.allclose(amap, slice_inferer(inferer_class, seed=4)(x, net)), "another seed draws other noise"
    one_by_one = slice_inferer(inferer_class, seed=3, slice_batch_size=1)(x, net)
    assert torch.allclose(amap, one_by_one, atol=1e-5), "the map must not depend on the batching"
    assert amap[x.sum(1, keepdim=True) == 0].abs().max() == 0, "zero outside the brain"


@pytest.mark.parametrize("inferer_class", INFERERS)
@pytest.mark.parametrize("shape", SHAPES[:2])
def test_perfect_reconstruction_gives_an_all_zero_map(inferer_class, shape):
    x = _brain(shape)
    inferer = slice_inferer(inferer_class, size_divisor=1)
    oracle = Oracle(inferer, _slices(x))
    assert inferer(x, oracle).abs().max() < 1e-6, "zero up to float rounding of the [0, 1] <-> [-1, 1] mapping"
    assert oracle.calls, "the network was called"


def test_cddpm_ensembles_three_noise_levels_with_the_clean_input_as_condition():
    x = _brain((1, 1, 24, 20))
    inferer = slice_inferer(CDDPMScorer, size_divisor=1)
    oracle = Oracle(inferer, x)
    inferer(x, oracle)
    assert [int(t[0]) for _, t, _ in oracle.calls] == [249, 499, 749]
    assert all(torch.equal(image, x) for _, _, image in oracle.calls), "the encoder sees the clean slice in [0, 1]"
    noised = [x_t for x_t, _, _ in oracle.calls]
    assert not torch.allclose(noised[0], noised[2]), "a new noise field per timestep"


def test_pddpm_noises_one_grid_cell_per_pass_and_stitches_four():
    x = _brain((1, 1, 24, 20))
    inferer = slice_inferer(PDDPMScorer, size_divisor=1)
    oracle = Oracle(inferer, x)
    inferer(x, oracle)
    assert len(oracle.calls) == 4 and all(int(t[0]) == 499 for _, t, _ in oracle.calls)
    clean = 2 * x - 1
    cells = [(slice(0, 12), slice(0, 10)), (slice(0, 12), slice(10, 20)), (slice(12, 24), slice(0, 10)),
             (slice(12, 24), slice(10, 20))]
    for (x_t, _, _), (rows, cols) in zip(oracle.calls, cells):
        changed = (x_t != clean)[0, 0]
        assert changed[rows, cols].float().mean() > 0.9 and changed.sum() == changed[rows, cols].sum()
    noise_per_pass = [((x_t - clean)[0, 0][r, c]) for (x_t, _, _), (r, c) in zip(oracle.calls, cells)]
    assert all(n.abs().sum() > 0 for n in noise_per_pass)


def test_pddpm_map_comes_from_the_cell_predictions():
    x = _brain((1, 1, 16, 16))

    def half_wrong(x_t, timesteps):  # right reconstruction everywhere but in the top-left cell
        out = 2 * x.expand_as(x_t) - 1
        return torch.where(torch.arange(16)[:, None] < 8, out - 0.5 * (torch.arange(16) < 8), out)

    amap = slice_inferer(PDDPMScorer, size_divisor=1)(x, half_wrong)[0, 0]
    brain = x[0, 0] > 0
    assert torch.allclose(amap[:8, :8][brain[:8, :8]], torch.tensor(0.25)), "|x - (pred + 1) / 2| = 0.5 / 2"
    assert amap[8:].abs().max() < 1e-6 and amap[:, 8:].abs().max() < 1e-6


@pytest.mark.parametrize("noise", ["gaussian", "simplex"])
def test_ddpm_noise_types(noise):
    x = _brain((1, 1, 32, 32))
    inferer = slice_inferer(DDPMScorer, noise=noise, size_divisor=1)
    oracle = Oracle(inferer, x)
    inferer(x, oracle)
    x_t, t, _ = oracle.calls[0]
    abar = inferer.scorer.scheduler.alphas_cumprod[t[0]]
    residual = ((x_t - abar.sqrt() * (2 * x - 1)) / (1 - abar).sqrt())[0, 0]  # the noise that was added
    lag1 = float(torch.corrcoef(torch.stack([residual[:, :-1].flatten(), residual[:, 1:].flatten()]))[0, 1])
    assert (lag1 > 0.9) if noise == "simplex" else (lag1 < 0.9), "simplex noise is smooth, Gaussian is not"


def test_metatensor_mask_and_reconstruction():
    x = MetaTensor(_brain((1, 1, 16, 16, 3)), affine=torch.diag(torch.tensor([2.0, 2, 3, 1])))
    mask = torch.zeros(1, 1, 16, 16, 3)
    mask[..., 4:12, 4:12, :] = 1
    amap, reco = slice_inferer(DDPMScorer, return_intermediates=True)(x, _network(DDPMScorer), mask=mask)
    assert isinstance(amap, MetaTensor) and amap.affine[2, 2] == 3
    assert amap[mask == 0].abs().max() == 0 and amap[mask > 0].max() > 0
    assert reco.shape == (1, 1, 16, 16, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(timesteps=(1000,)), "timesteps"),
    (dict(timesteps=()), "at least one"),
    (dict(patch_grid=(2,)), "patch_grid"),
    (dict(noise="uniform"), "uniform"),
    (dict(size_divisor=0), "size_divisor"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        slice_inferer(DiffusionScorer, **kwargs)


@pytest.mark.parametrize("inferer_class", INFERERS)
def test_each_volume_gets_its_own_noise_field_whatever_is_scored_with_it(inferer_class):
    """Released: a fresh noise field per volume. A volume's map is the same alone or next to another volume."""
    x = _brain((2, 1, 20, 18, 4))
    net = _network(inferer_class)
    both = slice_inferer(inferer_class, seed=3)(x, net)
    alone = [slice_inferer(inferer_class, seed=3)(x[i:i + 1], net) for i in range(2)]
    assert torch.allclose(both, torch.cat(alone), atol=1e-5), "the map of a volume does not depend on the others"
    swapped = slice_inferer(inferer_class, seed=3)(x.flip(0), net)
    assert torch.allclose(swapped.flip(0), both, atol=1e-5), "nor on the order"

    def first_noise(inferer, volumes):  # the noise field each volume got at the first timestep, (B, H, W)
        oracle = Oracle(inferer, _slices(volumes))
        inferer(volumes, oracle)
        x_t, t, _ = oracle.calls[0]
        abar = inferer.scorer.scheduler.alphas_cumprod[t[0]]
        noise = ((x_t - abar.sqrt() * (2 * _slices(volumes) - 1)) / (1 - abar).sqrt())[:, 0]
        cells = inferer.scorer.test_cells(*noise.shape[1:])
        return noise if cells is None else noise * cells[0, 0]  # pDDPM's first pass noises its first cell only

    one = _brain((1, 1, 20, 18, 3))[..., 1:2]  # one slice with brain
    other = one * 0.9
    noise = first_noise(slice_inferer(inferer_class, seed=3, size_divisor=1), torch.cat([one, other]))
    assert not torch.allclose(noise[0], noise[1], atol=1e-3), "two volumes: two fields"
    noise = first_noise(slice_inferer(inferer_class, seed=3, size_divisor=1), torch.cat([one, one]))
    assert torch.allclose(noise[0], noise[1], atol=1e-4), "the same values: the same field (seeded by content)"
    shared = slice_inferer(inferer_class, seed=3, size_divisor=1, noise_per_volume=False)
    noise = first_noise(shared, torch.cat([one, other]))
    assert torch.allclose(noise[0], noise[1], atol=1e-4), "0.3.x: one field for every volume"


def _training_cells(height, width, slice_size, grid):
    """Cell index of every pixel of a height x width slice, as the bundle's training step cuts it (-1: cropped)."""
    from monai.transforms import ResizeWithPadOrCrop

    from disyre_monai.transforms.diffusion import grid_cells

    index = torch.arange(height * width, dtype=torch.float64).reshape(1, height, width) + 1
    framed = ResizeWithPadOrCrop(slice_size)(index).as_tensor()[0]  # the slice in the training frame, 0 = padding
    cells = grid_cells(*slice_size, grid)[:, 0].long().argmax(0)  # cell index of each frame pixel
    out = torch.full((height * width,), -1, dtype=torch.long)
    kept = framed > 0
    out[framed[kept].long() - 1] = cells[kept]
    return out.reshape(height, width)


@pytest.mark.parametrize("shape", [(91, 109), (96, 112), (120, 130), (100, 90)])
def test_pddpm_cells_at_test_time_are_the_training_cells(shape):
    """The test slice is placed in the training frame: its cells are the ones the training step noised."""
    inferer = slice_inferer(PDDPMScorer, slice_size=(96, 112), size_divisor=4)
    top, bottom, left, right = inferer.scorer.slice_padding(*shape)
    padded = (shape[0] + top + bottom, shape[1] + left + right)
    assert padded[0] % 4 == 0 and padded[1] % 4 == 0
    cells = inferer.scorer.test_cells(*padded)[:, 0].long().argmax(0)[top:top + shape[0], left:left + shape[1]]
    train = _training_cells(*shape, (96, 112), (2, 2))
    seen = train >= 0
    # the same partition where training saw the slice: pixels share a test cell iff they shared a training cell
    pairs = {(int(a), int(b)) for a, b in zip(train[seen].tolist(), cells[seen].tolist())}
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    if shape[0] <= 96 and shape[1] <= 112:
        assert torch.equal(cells, train), "a smaller slice is padded exactly as training padded it"
        assert padded == (96, 112)


def test_slice_size_must_split_into_cells_the_network_can_take():
    with pytest.raises(ValueError, match="slice_size"):
        slice_inferer(PDDPMScorer, slice_size=(96, 110), size_divisor=4)
    with pytest.raises(ValueError, match="slice_size"):
        slice_inferer(DDPMScorer, slice_size=(96,))


@pytest.mark.parametrize("inferer_class", INFERERS)
def test_maps_in_the_training_frame_are_maps_of_the_slice(inferer_class):
    """With slice_size the map still covers the input grid, zero outside the brain, perfect denoiser -> zero."""
    x = _brain((1, 1, 20, 18, 3))
    inferer = slice_inferer(inferer_class, slice_size=(24, 24), size_divisor=4)
    assert inferer(x, _network(inferer_class)).shape == (1, 1, 20, 18, 3)

    class FramedOracle(torch.nn.Module):
        def forward(self, x_t, timesteps, image=None):
            top, _, left, _ = inferer.scorer.slice_padding(20, 18)
            clean = torch.zeros_like(x_t) - 1
            clean[:, :, top:top + 20, left:left + 18] = 2 * _slices(x)[inferer.slice_index] - 1
            return clean

    assert inferer(x, FramedOracle()).abs().max() < 1e-6
