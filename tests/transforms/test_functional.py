import numpy as np
import pytest

from disyre_monai.transforms import functional as F


@pytest.mark.parametrize("shape", [(32, 32), (24, 24, 24)])
def test_shapes_are_centred_and_sized(shape):
    center = [n / 2 for n in shape]
    box = F.box_shape(shape, center, side=10)
    disc = F.ellipsoid_shape(shape, center, diameter=10)
    assert box.sum() == pytest.approx(11 ** len(shape), rel=0.01)
    assert 0 < disc.sum() < box.sum()
    flat = F.blob_shape(shape, center, 10, np.zeros(shape, np.float32), roughness=0.5)
    assert np.array_equal(flat, disc), "a blob without noise is the disc/sphere"


def test_blob_is_irregular_and_rotation_changes_box():
    noise = F.smooth_noise(np.random.default_rng(0).standard_normal((48, 48)), 3)
    blob = F.blob_shape((48, 48), (24, 24), 30, noise, 0.5)
    assert not np.array_equal(blob, F.ellipsoid_shape((48, 48), (24, 24), 30))
    assert not np.array_equal(F.box_shape((48, 48), (24, 24), 20, 15), F.box_shape((48, 48), (24, 24), 20, 0))


def test_fpi_blend_endpoints():
    img, patch = np.full((1, 8, 8), 0.2, np.float32), np.full((1, 8, 8), 0.9, np.float32)
    m = np.zeros((8, 8), np.float32)
    m[2:5, 2:5] = 1
    assert np.array_equal(F.foreign_patch_blend(img, m, patch, 0.0), img)
    full = F.foreign_patch_blend(img, m, patch, 1.0)
    assert np.allclose(full[0][m > 0], 0.9) and np.allclose(full[0][m == 0], 0.2)


def test_rescale_to_host_matches_host_range_inside_mask():
    rng = np.random.default_rng(1)
    host, patch = rng.uniform(0.3, 0.5, (1, 16, 16)), rng.uniform(0, 10, (1, 16, 16))
    m = np.zeros((16, 16))
    m[4:12, 4:12] = 1
    out = F.rescale_to_host(patch, host, m)[0][m > 0]
    assert out.min() == pytest.approx(host[0][m > 0].min()) and out.max() == pytest.approx(host[0][m > 0].max())


def test_place_patch_mirrors_outside_the_crop():
    crop = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    canvas = F.place_patch(crop, (8, 8), (2, -1))
    assert canvas.shape == (1, 8, 8)
    assert np.array_equal(canvas[0, 2:6, 0:3], crop[0, :, 1:4])


def test_intensity_bias_targets_only_chosen_classes():
    img = np.zeros((1, 10, 10), np.float32)
    img[0, :, :5], img[0, :, 5:] = 0.38, 0.94  # classes 1 and 4 of the codebook
    m = np.ones((10, 10), np.float32)
    out = F.intensity_bias(img, m, classes=[1], alpha=-0.3, sigma=0)
    assert np.allclose(out[0, :, :5], 0.08) and np.array_equal(out[0, :, 5:], img[0, :, 5:])
    assert np.array_equal(F.intensity_bias(img, m, [1], 0.0), img)
    assert F.class_counts(img, m).tolist() == [0, 50, 0, 0, 50]
