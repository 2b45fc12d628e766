"""Tests for the seeded lesion simulator (small synthetic volumes)."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from disyre_monai.synthetic.lesions import simulate_lesion


@pytest.fixture
def phantom():
    """A 40^3 'head': textured tissue inside a ball-shaped brain mask, zero outside."""
    rng = np.random.default_rng(123)
    shape = (40, 40, 40)
    grid = np.indices(shape) - 19.5
    brain = np.sqrt((grid**2).sum(0)) < 17
    tissue = 0.7 + 0.1 * ndi.gaussian_filter(rng.standard_normal(shape), 2) / 0.05
    image = np.clip(tissue, 0.4, 1.0).astype(np.float32) * brain
    return image, brain


def test_same_seed_same_output(phantom):
    image, brain = phantom
    out1, m1 = simulate_lesion(image, brain, 7)
    out2, m2 = simulate_lesion(image, brain, np.random.default_rng(7))
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(m1, m2)
    out3, m3 = simulate_lesion(image, brain, 8)
    assert not np.array_equal(m1, m3)


def test_input_not_modified(phantom):
    image, brain = phantom
    before = image.copy()
    simulate_lesion(image, brain, 0)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("seed", range(6))
def test_lesion_inside_brain_and_image_unchanged_outside(phantom, seed):
    image, brain = phantom
    out, lesion = simulate_lesion(image, brain, seed, radius_range=(2, 6), border_margin=1)
    assert out.shape == image.shape and lesion.shape == image.shape
    assert lesion.dtype == bool and lesion.any()
    assert not (lesion & ~brain).any()
    np.testing.assert_array_equal(out[~lesion], image[~lesion])
    assert np.isfinite(out).all()


@pytest.mark.parametrize("seed", range(6))
def test_core_darker_than_surroundings(phantom, seed):
    image, brain = phantom
    out, lesion = simulate_lesion(image, brain, seed, radius_range=(3, 6), contrast_range=(0.3, 0.5))
    core = ndi.binary_erosion(lesion, iterations=2)
    assert core.any()
    shell = ndi.binary_dilation(lesion, iterations=3) & ~lesion & brain
    assert out[core].mean() < 0.7 * out[shell].mean()
    assert (out[core] < image[core]).all()


def test_hard_edge_and_integer_image(phantom):
    image, brain = phantom
    out, lesion = simulate_lesion((image * 100).astype(np.int16), brain, 3, edge_sigma=0, irregularity=0)
    assert out.dtype == np.float32
    assert lesion.any() and not (lesion & ~brain).any()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"radius_range": (0.5, 3)}, "radius_range"),
        ({"radius_range": (5, 3)}, "radius_range"),
        ({"radius_range": (2, 3, 4)}, "radius_range"),
        ({"contrast_range": (0.2, 1.0)}, "contrast_range"),
        ({"contrast_range": (-0.1, 0.5)}, "contrast_range"),
        ({"irregularity": 1.0}, "irregularity"),
        ({"irregularity": -0.1}, "irregularity"),
        ({"edge_sigma": -1}, "edge_sigma"),
        ({"border_margin": float("nan")}, "border_margin"),
        ({"radius_range": (30, 40)}, "radius_range"),  # too big to fit inside the brain
    ],
)
def test_bad_arguments_name_the_parameter(phantom, kwargs, name):
    image, brain = phantom
    with pytest.raises(ValueError, match=name):
        simulate_lesion(image, brain, 0, **kwargs)


def test_bad_arrays(phantom):
    image, brain = phantom
    with pytest.raises(ValueError, match="image"):
        simulate_lesion(image[0], brain[0], 0)
    with pytest.raises(ValueError, match="brain_mask"):
        simulate_lesion(image, brain[:-1], 0)
    with pytest.raises(ValueError, match="brain_mask"):
        simulate_lesion(image, np.zeros_like(brain), 0)
    bad = image.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image"):
        simulate_lesion(bad, brain, 0)
