"""Registration templates: named templates shipped in PyPI packages, template files with a brain mask."""

import importlib.util

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.preprocess import load_template, template_path
from disyre_monai.preprocess.volumes import affine_of, spatial_array
from tests.preprocess.synthetic import synthetic_head, write_nifti


def _without(package, find_spec):
    return lambda name, *args: None if name == package else find_spec(name, *args)


def test_named_template_without_its_package_says_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", _without("nilearn", real_find_spec))
    with pytest.raises(ImportError, match="pip install nilearn"):
        template_path("mni152_2009a")


@pytest.mark.skipif(importlib.util.find_spec("nilearn") is None, reason="optional nilearn not installed")
def test_mni152_2009a_is_the_1mm_brain_template_shipped_with_nilearn():
    path = template_path("mni152_2009a")
    assert path.name == "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    image = nib.load(str(path))
    assert image.shape == (197, 233, 189) and nib.aff2axcodes(image.affine) == ("R", "A", "S")
    np.testing.assert_allclose(image.header.get_zooms(), (1.0, 1.0, 1.0))
    assert 0.15 < float((np.asarray(image.dataobj) > 0).mean()) < 0.3  # brain only, no skull


def test_template_file_with_a_mask_is_skull_stripped(tmp_path):
    image, mask, _ = synthetic_head(lesion=False)
    load_template.cache_clear()
    template = load_template(
        str(write_nifti(tmp_path / "head.nii.gz", image)), str(write_nifti(tmp_path / "brain.nii.gz", mask))
    )
    data = spatial_array(template)
    assert np.all(data[mask == 0] == 0) and np.array_equal(data[mask > 0], image[mask > 0])
    np.testing.assert_allclose(affine_of(template), nib.load(str(tmp_path / "head.nii.gz")).affine)
    with pytest.raises(ValueError, match="template_mask"):
        load_template(str(tmp_path / "head.nii.gz"), str(write_nifti(tmp_path / "small.nii.gz", mask[:5])))
