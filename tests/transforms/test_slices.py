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


def _monai_crop(data):
    from monai.transforms import CropForegroundd

    return CropForegroundd(["image", "mask"], source_key="mask", allow_smaller=True)(data)


@pytest.mark.parametrize("shape", [(1, 23, 31), (2, 9, 11, 13)])
def test_crop_to_mask_crops_the_box_monai_crop_foreground_crops(shape):
    from disyre_monai.transforms import CropToMaskd

    rng = np.random.default_rng(0)
    for trial in range(20):
        mask = np.zeros(shape, np.uint8)
        lo = [int(rng.integers(0, s // 2)) for s in shape[1:]]
        hi = [int(rng.integers(start + 1, s + 1)) for start, s in zip(lo, shape[1:])]
        box = (slice(int(rng.integers(0, shape[0])), None), *[slice(a, b) for a, b in zip(lo, hi)])
        mask[box] = rng.random(mask[box].shape) > 0.3
        data = {"image": torch.as_tensor(rng.random(shape, dtype=np.float32)), "mask": torch.as_tensor(mask)}
        ours, monai = CropToMaskd(["image", "mask"], mask_key="mask")(data), _monai_crop(data)
        for key in ("image", "mask"):
            assert torch.equal(torch.as_tensor(ours[key]), monai[key].as_tensor()), (trial, key)


def test_crop_to_mask_empty_mask_metadata_and_errors():
    from disyre_monai.transforms import CropToMaskd

    t = CropToMaskd(["image", "mask"], mask_key="mask")
    empty = t({"image": torch.rand(1, 5, 6), "mask": torch.zeros(1, 5, 6)})
    assert tuple(empty["image"].shape) == (1, 0, 0)  # as CropForegroundd: nothing to keep
    mask = torch.zeros(1, 8, 9, 10)
    mask[0, 2:5, 3:7, 1:4] = 1
    image = MetaTensor(torch.rand(1, 8, 9, 10), affine=torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0])),
                       meta={"filename_or_obj": "head.nii.gz"})
    ours, monai = t({"image": image, "mask": mask}), _monai_crop({"image": image, "mask": mask})
    assert torch.equal(ours["image"].affine, monai["image"].affine)  # the origin follows the crop
    assert tuple(ours["image"].shape) == (1, 3, 4, 3)
    with pytest.raises(ValueError, match="'image' of head.nii.gz has spatial shape"):
        t({"image": image, "mask": torch.zeros(1, 8, 9, 9)})
    with pytest.raises(KeyError, match="mask key 'mask' is not in the sample"):
        t({"image": image})


@pytest.mark.parametrize("spacing, expected", [(2.0, (20, 69)), (1.0, (10, 79)), (4.0, (33, 57))])
def test_central_slab_keeps_the_central_millimetres_of_the_brain(spacing, expected):
    """Released cDDPM/pDDPM: 100 mm of the brain's axial extent, centred as a centred crop cuts it."""
    mask = torch.zeros(1, 8, 8, 90)
    mask[..., 10:80] = 1  # 70 slices with brain
    image = MetaTensor(mask.clone(), affine=torch.diag(torch.tensor([1.0, 1.0, spacing, 1.0])))
    t = RandSlicesd(["image", "mask"], num_slices=4000, mask_key="mask", central_mm=100)
    t.set_random_state(0)
    samples = t({"image": image, "mask": mask})
    assert len(samples) == 4000 and (t.positions.min(), t.positions.max()) == expected
    with pytest.raises(ValueError, match="no affine"):
        t({"image": mask, "mask": mask})


def test_slices_with_no_brain_are_never_drawn_and_gapless_masks_keep_their_draws():
    mask = torch.zeros(1, 6, 6, 30)
    mask[..., 4:26] = 1
    gapless = RandSlicesd(["image", "mask"], num_slices=500).set_random_state(7)
    gapless({"image": mask, "mask": mask})
    # the draws a gapless mask always had: any slice from the first to the last with brain
    assert np.array_equal(gapless.positions, np.random.RandomState(7).randint(4, 26, size=500))
    mask[..., [5, 9, 10, 11, 20]] = 0  # a registration mask with empty slices inside the brain's range
    gaps = RandSlicesd(["image", "mask"], num_slices=500).set_random_state(7)
    samples = gaps({"image": mask, "mask": mask})
    assert set(gaps.positions.tolist()) == set(range(4, 26)) - {5, 9, 10, 11, 20}
    assert all(s["mask"].any() for s in samples)


def test_crop_to_mask_pads_small_crops_to_one_patch_centred():
    from disyre_monai.transforms import CropToMaskd

    image, mask = torch.rand(1, 40, 50), torch.zeros(1, 40, 50)
    mask[0, 7, 9] = 1  # a speck of brain
    speck = CropToMaskd(["image", "mask"], mask_key="mask", min_size=(16, 16))({"image": image, "mask": mask})
    assert tuple(speck["image"].shape) == (1, 16, 16) and speck["image"][0, 7, 7] == image[0, 7, 9]
    assert speck["image"].sum() == image[0, 7, 9] and speck["mask"].sum() == 1  # zeros around it
    mask[0, 2:38, 5:8] = 1  # 36 x 3 box: only the short side is padded
    thin = CropToMaskd(["image", "mask"], mask_key="mask", min_size=16)({"image": image, "mask": mask})
    assert tuple(thin["image"].shape) == (1, 36, 16)
    assert torch.equal(thin["image"][0, :, 5:10], image[0, 2:38, 5:10])  # (16 - 5) // 2 = 5 zero columns before
