"""Anomaly shapes as released: sizes, rotation and blur probabilities, placement in the anomaly box."""

import numpy as np
import pytest

from disyre_monai.transforms import RandAnomalyShape

# The released shape bank (snavalm/disyre experiments/shapes, 300 volumes) as the released code samples it
# into a 64 x 64 box, measured with scripts/released_shape_sizes.py (20 000 draws, seed 0).
RELEASED_MEDIAN_AREA = 2244.0
RELEASED_OVER_HALF_BOX = 0.562
BOX = 64


def _areas(kind, draws, seed=0, **kwargs):
    t = RandAnomalyShape(kinds=kind, blur_prob=0.0, **kwargs).set_random_state(seed)
    image = np.ones((1, 2 * BOX, 2 * BOX), np.float32)
    return np.array([float(t(image).sum()) for _ in range(draws)]), t


def test_blob_sizes_match_the_released_shape_bank():
    areas, _ = _areas("blob", 600)
    assert abs(np.median(areas) - RELEASED_MEDIAN_AREA) <= 0.1 * RELEASED_MEDIAN_AREA
    assert abs((areas > BOX * BOX / 2).mean() - RELEASED_OVER_HALF_BOX) <= 0.1 * RELEASED_OVER_HALF_BOX


def test_rectangles_have_separate_sides_in_the_released_range_and_rotate_half_the_time():
    t = RandAnomalyShape(kinds="box", blur_prob=0.0).set_random_state(0)
    image = np.ones((1, 128, 128), np.float32)
    sides, angles = [], []
    for _ in range(400):
        m = t(image)[0]
        angles.append(t.draw.angle)
        if t.draw.angle == 0:
            rows, cols = np.nonzero(m)
            sides.append((rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
            assert m.sum() == sides[-1][0] * sides[-1][1], "an unrotated box is a full rectangle"
    sides = np.array(sides)
    assert sides.min() >= 10 and sides.max() <= 44
    assert (sides[:, 0] != sides[:, 1]).mean() > 0.9, "sides are drawn separately"
    assert abs(np.mean(np.array(angles) != 0) - 0.5) < 0.06
    assert np.abs(angles).max() <= 15


def test_edges_are_blurred_with_probability_0_7():
    t = RandAnomalyShape().set_random_state(0)
    image = np.ones((1, 128, 128), np.float32)
    blurred = []
    for _ in range(400):
        t(image)
        blurred.append(t.draw.sigma > 0)
    assert abs(np.mean(blurred) - 0.7) < 0.06


def test_box_centre_on_brain_half_a_box_from_the_border_and_shape_inside_the_box():
    image = np.zeros((1, 160, 160), np.float32)
    image[0, 20:140, 20:140] = 1  # brain; eligible centres are brain voxels in [32, 128)
    t = RandAnomalyShape(blur_prob=0.0).set_random_state(1)
    offsets = []
    for _ in range(300):
        m = t(image)[0]
        c = np.array(t.draw.center)
        assert (c >= 32).all() and (c < 128).all() and image[0][tuple(c)] > 0
        rows, cols = np.nonzero(m)
        assert rows.min() >= c[0] - 32 and rows.max() < c[0] + 32 and cols.min() >= c[1] - 32
        assert cols.max() < c[1] + 32
        if t.draw.kind != "blob":
            offsets.append(np.abs(t.draw.offset).max())
    assert max(offsets) > 10, "rectangles and discs are placed at a random offset inside the box"


def test_no_eligible_brain_voxel_still_places_a_box_and_empty_images_give_nothing():
    image = np.zeros((1, 64, 64), np.float32)
    image[0, :8] = 1  # brain only near the border
    t = RandAnomalyShape(patch_size=32).set_random_state(0)
    t(image)
    assert t.draw.center is not None and all(16 <= c <= 48 for c in t.draw.center)
    assert not t(np.zeros((1, 32, 32), np.float32)).any() and t.draw.center is None


@pytest.mark.parametrize("kind", ["box", "ellipsoid", "blob"])
def test_3d_shapes_and_seeded_draws(kind):
    image = np.ones((1, 48, 48, 40), np.float32)
    a = RandAnomalyShape(kinds=kind, patch_size=32, size_range=(5, 22), ellipsoid_margin=5).set_random_state(3)
    b = RandAnomalyShape(kinds=kind, patch_size=32, size_range=(5, 22), ellipsoid_margin=5).set_random_state(3)
    ma, mb = a(image), b(image)
    assert ma.shape == image.shape and ma.any() and np.array_equal(ma, mb)
