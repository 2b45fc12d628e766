import json

import numpy as np
import pytest
from monai.data import Dataset
from monai.transforms import Compose

from disyre_monai.data import FixedSampleDataset, calibration_cases, demo_datalist, load_datalist, optional_datalist
from disyre_monai.transforms import RandDisyreCorruptiond, RandSlicesd


def test_demo_is_the_default():
    assert load_datalist(split="validation") == demo_datalist()["validation"]
    with pytest.raises(ValueError, match="no 'holdout' split"):
        load_datalist(split="holdout")


def test_json_datalist_resolves_relative_paths_and_lists_missing_files(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"test": [{"image": "a.nii.gz", "subject": "a"}]}))
    assert load_datalist(datalist=str(listing)) == [{"image": str(tmp_path / "a.nii.gz"), "subject": "a"}]
    listing.write_text(json.dumps({"test": [{"image": "a.nii.gz", "label": "missing_label.nii.gz"},
                                            {"image": "gone.nii.gz"}]}))
    with pytest.raises(FileNotFoundError, match="2 file\\(s\\).*missing_label.nii.gz \\(label\\).*gone.nii.gz"):
        load_datalist(datalist=str(listing))
    with pytest.raises(ValueError, match="no non-empty 'training' list"):
        load_datalist(datalist=str(listing), split="training")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_datalist(datalist=str(tmp_path / "nope.json"))


def test_folder_of_images(tmp_path):
    for name in ("b.nii.gz", "a.nii", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [e["image"] for e in load_datalist(str(tmp_path))] == [str(tmp_path / "a.nii"), str(tmp_path / "b.nii.gz")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image"):
        load_datalist(str(empty))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_datalist(str(tmp_path / "absent"))


def test_fixed_sample_dataset_is_reproducible_and_flattens_lists():
    volume = np.zeros((1, 16, 16, 6), np.float32)
    volume[:, 3:13, 3:13, 1:5] = 0.6

    def make(seed):
        pipeline = Compose([RandSlicesd(keys="image", num_slices=3, mask_key=None),
                            RandDisyreCorruptiond(keys="image", shape={"size_range": (3, 6), "patch_size": 8})])
        return FixedSampleDataset([{"image": volume}, {"image": volume}], pipeline, seed=seed)

    a, b = make(1), make(1)
    assert len(a) == 6
    assert all(np.array_equal(x["image"], y["image"]) and x["timestep"] == y["timestep"] for x, y in zip(a, b))
    assert any(not np.array_equal(x["image"], y["image"]) for x, y in zip(a, make(2)))
    pipeline = Compose([RandSlicesd(keys="image", num_slices=3, mask_key=None),
                        RandDisyreCorruptiond(keys="image", shape={"size_range": (3, 6), "patch_size": 8})])
    from_dataset = FixedSampleDataset(Dataset([{"image": volume}, {"image": volume}]), pipeline, seed=1)
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, from_dataset)), "a dataset reads like a list"


def test_an_optional_datalist_is_empty_when_not_given_and_the_demo_is_not_taken_for_it():
    assert optional_datalist(None, None, "test") == []
    listing = demo_datalist()
    assert optional_datalist(None, str(_demo_json()), "test") == listing["test"]


def test_calibration_cases_can_be_switched_off():
    assert calibration_cases(None, None, "validation", enabled=False) == []
    assert calibration_cases(None, None, "validation") == demo_datalist()["validation"]


def _demo_json():
    from disyre_monai.data import demo_root

    return demo_root() / "datalist.json"
