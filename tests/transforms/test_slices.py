import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.transforms import EnsureBrainMaskd, RandSlicesd


def _volume():
    v = torch.zeros(1, 10, 12, 8)
    v[:, 2:8, 3:9, 2:6] = 0.5
    return v


@pytest.mark.parametrize("axis, brain_range", [(2, (2, 5)), (0, (2, 7)), (1, (3, 8))])
def test_slices_come_from_the_brain_range_of_the_chosen_axis(axis, brain_range):
    data = EnsureBrainMaskd()({"image": _volume()})
    t = RandSlicesd(keys=["image", "mask"], num_slices=40, axis=axis).set_random_state(0)
    samples = t(data)
    assert len(samples) == 40
    assert set(t.positions.tolist()) == set(range(brain_range[0], brain_range[1] + 1))
    for s, pos in zip(samples, t.positions):
        assert s["image"].ndim == 3 and s["mask"].shape == s["image"].shape
        assert torch.equal(s["image"], _volume().select(axis + 1, int(pos)))


def test_slices_are_reproducible_and_reject_empty_volumes():
    data = {"image": _volume()}
    first = RandSlicesd(keys="image", num_slices=5, mask_key=None).set_random_state(3)
    second = RandSlicesd(keys="image", num_slices=5, mask_key=None).set_random_state(3)
    first(data), second(data)
    assert np.array_equal(first.positions, second.positions)
    with pytest.raises(ValueError, match="has no brain voxel"):
        first({"image": torch.zeros(1, 4, 4, 4)})
    with pytest.raises(ValueError, match="expects \\(C, H, W, D\\) volumes"):
        first({"image": torch.zeros(1, 4, 4)})


def test_brain_mask_given_or_derived():
    image = MetaTensor(_volume(), meta={"filename_or_obj": "img.nii.gz"})
    derived = EnsureBrainMaskd()({"image": image})["mask"]
    assert derived.dtype == torch.uint8 and int(derived.sum()) == 6 * 6 * 4
    given = torch.zeros(1, 10, 12, 8)
    given[0, 0, 0, 0] = 3
    assert int(EnsureBrainMaskd()({"image": image, "mask": given})["mask"].sum()) == 1
    bad = MetaTensor(torch.zeros(1, 5, 5, 5), meta={"filename_or_obj": "mask.nii.gz"})
    with pytest.raises(ValueError, match="brain mask mask.nii.gz has spatial shape .* image img.nii.gz"):
        EnsureBrainMaskd()({"image": image, "mask": bad})
