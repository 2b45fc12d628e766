"""The single steps: loading/saving, RAS reorientation, resampling, skull stripping, crop/pad."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.preprocess import (
    apply_brain_mask,
    crop_or_pad,
    crop_pad_window,
    load_volume,
    reorient_to_ras,
    resample_to_spacing,
    save_volume,
    threshold_brain_mask,
)
from disyre_monai.preprocess.volumes import affine_of, spatial_array
from tests.preprocess.synthetic import PLS_AFFINE, synthetic_head, world, write_nifti


def _volume(array, affine=PLS_AFFINE) -> MetaTensor:
    return MetaTensor(torch.as_tensor(np.asarray(array, np.float32))[None], affine=torch.as_tensor(affine))


def _index_volume(shape=(5, 6, 7)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def _nearest_input_values(array, affine, point) -> np.ndarray:
    """Values of the input voxels nearest to a world point (several when it lies halfway between voxels)."""
    source = np.linalg.solve(affine, np.r_[point, 1.0])[:3]
    low, high = np.ceil(source - 0.5 - 1e-6).astype(int), np.floor(source + 0.5 + 1e-6).astype(int)
    return array[tuple(slice(lo, hi + 1) for lo, hi in zip(low, high))]


def test_reorient_to_ras_moves_voxels_without_changing_their_world_coordinates():
    values = _index_volume()
    out = reorient_to_ras(_volume(values))
    assert nib.aff2axcodes(affine_of(out)) == ("R", "A", "S")
    assert tuple(out.shape[1:]) == (6, 5, 7)  # P/L axes swapped into R/A order
    out_values, out_affine = spatial_array(out), affine_of(out)
    for index in [(0, 0, 0), (5, 4, 6), (2, 3, 1)]:
        source = np.linalg.solve(PLS_AFFINE, np.r_[world(out_affine, index), 1])[:3]
        np.testing.assert_allclose(source, np.round(source), atol=1e-6)
        assert out_values[index] == values[tuple(np.round(source).astype(int))]


def test_resample_to_1mm_keeps_world_coordinates_and_nearest_labels_binary():
    image, _, label = synthetic_head()
    ras_label = reorient_to_ras(_volume(label))
    out = resample_to_spacing(ras_label, (1.0, 1.0, 1.0), "label")
    affine = affine_of(out)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), 1.0)
    values = spatial_array(out)
    assert set(np.unique(values)) == {0.0, 1.0}
    labelled_in = world(PLS_AFFINE, np.argwhere(label > 0)).mean(0)
    labelled_out = world(affine, np.argwhere(values > 0)).mean(0)
    np.testing.assert_allclose(labelled_out, labelled_in, atol=0.75)
    # nearest neighbour: every labelled output voxel maps back onto a labelled nearest input voxel
    for index in np.argwhere(values > 0):
        assert _nearest_input_values(label, PLS_AFFINE, world(affine, index)).max() == 1
    # the image's field of view is kept: physical extent within a voxel of the input's
    img = resample_to_spacing(reorient_to_ras(_volume(image)), 1.0, "image")
    extent_in = np.abs(PLS_AFFINE[:3, :3] @ (np.array(image.shape) - 1)).round(6)
    extent_out = np.abs(affine_of(img)[:3, :3] @ (np.array(img.shape[1:]) - 1))
    assert np.all(np.abs(np.sort(extent_out) - np.sort(extent_in)) <= 2.0)


def test_resample_is_a_no_op_at_the_target_spacing():
    volume = _volume(_index_volume(), np.diag([1.0, 1.0, 1.0, 1.0]))
    assert resample_to_spacing(volume, 1.0) is volume
    with pytest.raises(ValueError, match="spacing"):
        resample_to_spacing(volume, (1.0, 1.0))


def test_skull_strip_zeroes_outside_the_mask_and_threshold_mask():
    image, mask, _ = synthetic_head()
    stripped = spatial_array(apply_brain_mask(_volume(image), _volume(mask)))
    assert np.all(stripped[mask == 0] == 0)
    np.testing.assert_array_equal(stripped[mask > 0], image[mask > 0])
    threshold = spatial_array(threshold_brain_mask(_volume(stripped)))
    assert np.array_equal(threshold > 0, stripped > 0)


def test_crop_pad_window_centres_the_brain_bounding_box():
    mask = np.zeros((40, 30, 20), np.uint8)
    mask[5:15, 10:26, 2:9] = 1  # bounding box centre (10, 18, 5.5)
    start, end = crop_pad_window(mask.shape, (16, 24, 31), mask)
    assert start == (2, 6, -10) and end == (18, 30, 21)
    assert crop_pad_window(mask.shape, (16, 24, 31)) == ((12, 3, -6), (28, 27, 25))


def test_crop_or_pad_keeps_world_coordinates_and_pads_with_zeros():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-20, -15, -10)
    image = np.full((40, 30, 20), 7.0, np.float32)
    mask = np.zeros_like(image)
    mask[5:15, 10:26, 2:9] = 1
    marker = np.zeros_like(image)
    marker[9, 17, 5] = 1
    volumes = {"image": _volume(image, affine), "mask": _volume(mask, affine), "label": _volume(marker, affine)}
    out = crop_or_pad(volumes, (16, 24, 31))
    assert all(tuple(v.shape[1:]) == (16, 24, 31) for v in out.values())
    new = affine_of(out["label"])
    np.testing.assert_allclose(world(new, np.argwhere(spatial_array(out["label"]) > 0)[0]), world(affine, (9, 17, 5)))
    brain = np.argwhere(spatial_array(out["mask"]) > 0)
    np.testing.assert_allclose((brain.min(0) + brain.max(0) + 1) / 2, np.array([16, 24, 31]) / 2, atol=0.5)
    padded = spatial_array(out["image"])
    assert padded[:, :, :10].max() == 0 and padded[:, :, 10:27].min() == 7  # z padded by 10 before, 4 after
    np.testing.assert_allclose(new, affine_of(out["image"]))
    with pytest.raises(ValueError, match="center"):
        crop_or_pad({"mask": _volume(mask, affine)}, (8, 8, 8), center="middle")


def test_load_and_save_round_trip_dtypes_and_affine(tmp_path):
    image, mask, _ = synthetic_head()
    src = write_nifti(tmp_path / "in.nii.gz", image.astype(np.int16))
    volume = load_volume(src)
    assert volume.shape == (1, *image.shape) and volume.dtype == torch.float32
    np.testing.assert_allclose(affine_of(volume), PLS_AFFINE)
    saved = nib.load(save_volume(volume, tmp_path / "out" / "image.nii.gz", "image"))
    assert saved.get_data_dtype() == np.float32
    np.testing.assert_allclose(saved.affine, PLS_AFFINE)
    saved_mask = nib.load(save_volume(_volume(mask * 1.0), tmp_path / "mask.nii.gz", "mask"))
    assert saved_mask.get_data_dtype() == np.uint8 and np.array_equal(np.asarray(saved_mask.dataobj), mask)
    assert not list(tmp_path.glob("**/.*.tmp"))  # atomic writes leave no temporary file


def test_load_volume_rejects_nan_non_3d_and_non_integer_labels(tmp_path):
    bad = np.ones((4, 5, 6), np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"nan\.nii\.gz.*1 NaN/Inf"):
        load_volume(write_nifti(tmp_path / "nan.nii.gz", bad))
    with pytest.raises(ValueError, match=r"4d\.nii\.gz.*3D"):
        load_volume(write_nifti(tmp_path / "4d.nii.gz", np.ones((4, 5, 6, 2), np.float32)))
    assert load_volume(write_nifti(tmp_path / "4d1.nii.gz", np.ones((4, 5, 6, 1), np.float32))).shape == (1, 4, 5, 6)
    with pytest.raises(ValueError, match=r"soft\.nii\.gz.*integers"):
        load_volume(write_nifti(tmp_path / "soft.nii.gz", np.full((4, 5, 6), 0.5, np.float32)), "label")
