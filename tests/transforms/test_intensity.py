import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from disyre_monai.transforms import ScaleByPercentile, ScaleByPercentiled


def _volume():
    img = np.zeros((1, 20, 20, 10), np.float32)
    img[0, 5:15, 5:15] = np.linspace(1, 100, 1000).reshape(10, 10, 10)
    img[0, 0, 0, 0] = -5.0
    return img


@pytest.mark.parametrize("within_mask", [True, False])
def test_scaled_to_unit_range_with_percentile(within_mask):
    img = _volume()
    out = ScaleByPercentile(98, within_mask)(img)
    ref = np.percentile(img[img > 0] if within_mask else np.clip(img, 0, None), 98)
    assert out.min() == 0 and out.max() == 1
    assert np.allclose(out[0, 5:15, 5:15], np.clip(img[0, 5:15, 5:15] / ref, 0, 1), atol=1e-6)


def test_mask_restricts_percentile_and_meta_survives():
    img = _volume()
    mask = np.zeros_like(img)
    mask[0, 5:10] = 1
    meta = MetaTensor(torch.from_numpy(img), affine=torch.diag(torch.tensor([2.0, 2, 2, 1])))
    out = ScaleByPercentiled(keys="image", mask_key="brain")({"image": meta, "brain": mask})["image"]
    ref = np.percentile(img[(mask > 0) & (img > 0)], 98)
    assert np.allclose(out.numpy()[0, 5:10], np.clip(img[0, 5:10] / ref, 0, 1), atol=1e-6)
    assert isinstance(out, MetaTensor) and out.affine[0, 0] == 2


@pytest.mark.parametrize(
    "img, match",
    [(np.zeros((1, 4, 4)), "no positive voxel"), (np.full((1, 4, 4), np.nan), "NaN or Inf")],
)
def test_bad_images(img, match):
    with pytest.raises(ValueError, match=match):
        ScaleByPercentile()(img)


def test_bad_percentile():
    with pytest.raises(ValueError, match="percentile must be in"):
        ScaleByPercentile(101)
