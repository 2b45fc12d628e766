"""Bad DICOM series get a clear error and nothing else stops (issue item 2).

A scanner export mixes series: the T1 next to localizers, other contrasts, incomplete or compressed series.
Every series found under ``dataset_dir`` becomes a case of its own, named ``series<N>_<hash>`` (no patient
field). A series that cannot be read as one volume is refused with a message naming the series and the defect
(and, for a compressed one, the package to install); the batch run lists it in ``failures.json`` and scores
the others. A series whose header does not say T1 is scored with a warning in ``failures.json``.

The series are built from NIfTI volumes with :func:`~disyre_monai.dicom.nifti_to_dicom_series` (a tiny 16x16x12
volume for the header checks; demo patients where the model must score them) and then damaged with pydicom.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.bundle import ConfigWorkflow
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers import numpy_handler

from disyre_monai.data import load_datalist
from disyre_monai.data.demo import demo_datalist
from disyre_monai.dicom import check_series_folder, find_series, nifti_to_dicom_series, series_problems

REPO = Path(__file__).resolve().parents[2]
INFER = str(REPO / "bundle" / "configs" / "inference.json")
PATIENT_NAME, PATIENT_ID = "DOE^JANE", "PAT123"
#: the patient fields as whole words (any case, any separator), e.g. "doe_jane", "PAT123"
PATIENT_FIELDS = re.compile(r"(?<![a-z])(doe|jane|pat123)(?![a-z])", re.IGNORECASE)
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
NOT_T1 = "its header does not say it is T1-weighted"
Edit = Callable[[list[Path]], None]


def edit_files(files: list[Path], change: Callable[[int, pydicom.Dataset], None]) -> None:
    """Apply ``change(index, dataset)`` to each file (in slice order) and save it in place."""
    for index, path in enumerate(files):
        ds = pydicom.dcmread(path)
        change(index, ds)
        ds.save_as(path)


def build_series(nifti: Path, folder: Path, number: int, description: str = "T1w MPRAGE", modality: str = "MR",
                 edit: Edit | None = None, prefix: str = "") -> list[Path]:
    """Write ``nifti`` as series ``number`` of patient DOE^JANE (PAT123) into ``folder``, then damage it.

    Args:
        nifti: the volume.
        folder: where the files go (created); other series may already be there.
        number: SeriesNumber (also seeds the UIDs).
        description: SeriesDescription and ProtocolName.
        modality: Modality.
        edit: the defect, applied to the files in slice order.
        prefix: file-name prefix, so that several series can share one folder.

    Returns:
        the files in slice order (those an edit deleted included).
    """
    staging = folder.parent / f".build{number}"
    built = nifti_to_dicom_series(nifti, staging, uid_seed=f"series-checks-{number}", patient_id=PATIENT_ID,
                                  series_number=number, description=description, modality=modality)
    edit_files(built, lambda _, ds: setattr(ds, "PatientName", PATIENT_NAME))
    folder.mkdir(parents=True, exist_ok=True)
    files = [Path(shutil.move(path, folder / f"{prefix}{path.name}")) for path in built]
    staging.rmdir()
    if edit is not None:
        edit(files)
    return files


def delete_middle_slice(files: list[Path]) -> None:
    files[len(files) // 2].unlink()


def shift_upper_half(files: list[Path]) -> None:
    """Move the upper half of the slices a quarter of the slice spacing along the normal."""
    first, second = (np.asarray(pydicom.dcmread(f).ImagePositionPatient, dtype=float) for f in files[:2])
    shift = (second - first) / 4
    edit_files(files, lambda i, ds: setattr(ds, "ImagePositionPatient", [
        f"{v:.6g}" for v in np.asarray(ds.ImagePositionPatient, dtype=float) + (shift if i >= len(files) // 2 else 0)
    ]))


def mark_localizer(files: list[Path]) -> None:
    edit_files(files, lambda _, ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))


def tilt_upper_half(files: list[Path]) -> None:
    """Give the upper half of the slices a sagittal orientation: two stacks in one series."""
    edit_files(files, lambda i, ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1])
               if i >= len(files) // 2 else None)


def compress_jpeg_ls(files: list[Path]) -> None:
    """Declare JPEG-LS lossless (the pixel data is encapsulated but not a real JPEG-LS stream)."""
    def change(_, ds):
        ds.file_meta.TransferSyntaxUID = JPEG_LS_LOSSLESS
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].is_undefined_length = True
    edit_files(files, change)


def duplicate_a_position(files: list[Path]) -> None:
    position = pydicom.dcmread(files[2]).ImagePositionPatient
    edit_files(files[3:4], lambda _, ds: setattr(ds, "ImagePositionPatient", position))


def resize_one_slice(files: list[Path]) -> None:
    edit_files(files[3:4], lambda _, ds: setattr(ds, "Rows", ds.Rows // 2))


def keep_two_slices(files: list[Path]) -> None:
    for path in files[2:]:
        path.unlink()


def make_multiframe(files: list[Path]) -> None:
    edit_files(files, lambda _, ds: setattr(ds, "NumberOfFrames", 2))


def drop_image_size(files: list[Path]) -> None:
    def change(_, ds):
        del ds.Rows, ds.Columns
    edit_files(files, change)


#: defect -> (SeriesDescription, Modality, edit, fragment of the error)
DEFECTS = {
    "missing_slice": ("T1w MPRAGE", "MR", delete_middle_slice, "1 slice(s) are missing: a gap of"),
    "uneven_spacing": ("T1w MPRAGE", "MR", shift_upper_half, "its slice spacing is uneven"),
    "localizer_image_type": ("T1w MPRAGE", "MR", mark_localizer, "it is a localizer/scout series"),
    "localizer_description": ("3-plane localizer", "MR", None, "it is a localizer/scout series"),
    "not_mr": ("T1w MPRAGE", "CT", None, "it is not an MR series (Modality CT)"),
    "two_stacks": ("T1w MPRAGE", "MR", tilt_upper_half, "it is not one stack of parallel slices (2 slice orientations"),
    "jpeg_ls_without_decoder": ("T1w MPRAGE", "MR", compress_jpeg_ls,
                                "no installed decoder reads it: pip install pylibjpeg pylibjpeg-libjpeg"),
    "duplicate_position": ("T1w MPRAGE", "MR", duplicate_a_position, "2 images share a slice position"),
    "different_sizes": ("T1w MPRAGE", "MR", resize_one_slice, "its images differ in size or pixel spacing"),
    "too_few_slices": ("T1w MPRAGE", "MR", keep_two_slices, "it has 2 image(s); a volume needs at least 3 slices"),
    "multiframe": ("T1w MPRAGE", "MR", make_multiframe, "it holds enhanced multi-frame images"),
    "not_an_image": ("T1w MPRAGE", "MR", drop_image_size, "it holds no images"),
}


@pytest.fixture
def no_jpeg_ls_decoder(monkeypatch):
    """pydicom with its numpy handler only: no decoder of compressed transfer syntaxes, whatever is installed."""
    monkeypatch.setattr(pydicom.config, "pixel_data_handlers", [numpy_handler])


@pytest.fixture(scope="module")
def tiny_nifti(tmp_path_factory) -> Path:
    """A 16x16x12 volume at 2 mm in [0, 1]."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.nii.gz"
    volume = np.random.default_rng(0).random((16, 16, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def only_series(folder: Path):
    found = find_series(folder)
    assert len(found) == 1, [s.label for s in found]
    return found[0]


def test_an_intact_t1_series_has_no_problem(tiny_nifti, tmp_path):
    build_series(tiny_nifti, tmp_path / "t1", 1)
    assert series_problems(only_series(tmp_path / "t1")) == ([], [])


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_series_problems_names_each_defect(defect, tiny_nifti, tmp_path, no_jpeg_ls_decoder):
    description, modality, edit, fragment = DEFECTS[defect]
    build_series(tiny_nifti, tmp_path / defect, 7, description, modality, edit)
    errors, _ = series_problems(only_series(tmp_path / defect))
    assert len(errors) == 1 and fragment in errors[0], errors


def test_a_compressed_series_passes_once_its_decoder_is_installed(tiny_nifti, tmp_path, monkeypatch):
    class JpegLsDecoder:
        @staticmethod
        def supports_transfer_syntax(syntax):
            return syntax == JPEG_LS_LOSSLESS

        @staticmethod
        def is_available():
            return True

    monkeypatch.setattr(pydicom.config, "pixel_data_handlers", [numpy_handler, JpegLsDecoder])
    build_series(tiny_nifti, tmp_path / "jpeg_ls", 7, edit=compress_jpeg_ls)
    assert series_problems(only_series(tmp_path / "jpeg_ls")) == ([], [])


@pytest.mark.parametrize("description, body_part, fragment", [
    ("T2 FLAIR", "HEAD", f"{NOT_T1} (description 'T2 FLAIR')"),
    ("ep2d_diff", "HEAD", f"{NOT_T1} (description 'ep2d_diff')"),
    ("T1w MPRAGE", "KNEE", "its body part is KNEE, not the head"),
])
def test_a_doubtful_series_is_warned_about_not_refused(description, body_part, fragment, tiny_nifti, tmp_path):
    files = build_series(tiny_nifti, tmp_path / "doubtful", 7, description)
    edit_files(files, lambda _, ds: setattr(ds, "BodyPartExamined", body_part))
    errors, warnings = series_problems(only_series(tmp_path / "doubtful"))
    assert errors == [] and len(warnings) == 1 and fragment in warnings[0], warnings


def test_a_folder_of_several_series_is_refused_naming_each(tiny_nifti, tmp_path):
    mixed = tmp_path / "mixed"
    build_series(tiny_nifti, mixed, 2, "T1w MPRAGE", prefix="a_")
    build_series(tiny_nifti, mixed, 3, "3-plane localizer", prefix="b_")
    build_series(tiny_nifti, mixed, 4, "T2 FLAIR", prefix="c_")
    found = find_series(mixed)
    assert [s.number for s in found] == [2, 3, 4]
    with pytest.raises(ValueError, match="holds 3 DICOM series") as raised:
        check_series_folder(mixed)
    message = str(raised.value)
    assert str(mixed) in message and "pass the folder as dataset_dir" in message
    for series in found:
        assert series.label in message and series.uid in message
    assert not PATIENT_FIELDS.search(message)


def test_a_bad_series_folder_is_refused_naming_folder_series_and_defect(tiny_nifti, tmp_path):
    folder = tmp_path / "incomplete"
    build_series(tiny_nifti, folder, 5, edit=delete_middle_slice)
    with pytest.raises(ValueError) as raised:
        check_series_folder(folder)
    message = str(raised.value)
    assert message.startswith(f"{folder}: DICOM series 5 'T1w MPRAGE' (")
    assert "cannot be read as a volume: 1 slice(s) are missing" in message
    assert message.endswith("re-export the complete series.")


def test_load_datalist_gives_nifti_files_and_each_dicom_series_as_cases(tiny_nifti, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(tiny_nifti, data / "scan.nii.gz")
    build_series(tiny_nifti, data / "export", 2, "T1w MPRAGE", prefix="a_")
    build_series(tiny_nifti, data / "export", 3, "T2 FLAIR", prefix="b_")
    build_series(tiny_nifti, data / "patient" / "study" / "series4", 4, "T1w MPRAGE", edit=mark_localizer)
    expected = {s.number: s for s in find_series(data)}

    entries = load_datalist(dataset_dir=str(data), staging_dir=str(tmp_path / "staging"))

    assert entries[0] == {"image": str((data / "scan.nii.gz").resolve())}
    assert [Path(e["image"]).name for e in entries[1:]] == [expected[n].name for n in (2, 3, 4)]
    for entry, number in zip(entries[1:], (2, 3, 4)):
        assert Path(entry["image"]).parent == tmp_path / "staging"
        assert only_series(Path(entry["image"])).uid == expected[number].uid
    assert "warnings" not in entries[1] and "warnings" not in entries[3]
    assert len(entries[2]["warnings"]) == 1 and NOT_T1 in entries[2]["warnings"][0]


# One bundle run over one folder: good demo patients beside every kind of bad series.
#: defect -> (SeriesNumber, folder under dataset_dir, fragment of the error in failures.json)
BUNDLE_DEFECTS = {
    "localizer_image_type": (4, "export", "it is a localizer/scout series, not a diagnostic volume"),
    "not_mr": (5, "export", "it is not an MR series (Modality CT)"),
    "missing_slice": (6, "missing", "1 slice(s) are missing"),
    "uneven_spacing": (7, "uneven", "its slice spacing is uneven"),
    "two_stacks": (8, "stacks", "it is not one stack of parallel slices"),
    "jpeg_ls_without_decoder": (9, "compressed", "pip install pylibjpeg pylibjpeg-libjpeg"),
}
GOOD, T2 = 2, 3


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory, tiny_nifti) -> dict:
    """Run the inference bundle once over a folder holding, in ``export/`` (flat), a demo patient's T1 (series 2),
    a localizer (4) and a CT series (5); in ``flair/`` another demo patient labelled "T2 FLAIR" (3); and one
    folder per other bad series. Returns the series by number, the output folder, the staging folder, the exit
    code and failures.json."""
    root = tmp_path_factory.mktemp("batch")
    data, output, staging = root / "data", root / "out", root / "staging"
    demo = demo_datalist()["test"]
    build_series(Path(demo[0]["image"]), data / "export", GOOD, "T1w MPRAGE", prefix="t1_")
    build_series(Path(demo[1]["image"]), data / "flair", T2, "T2 FLAIR")
    for defect, (number, folder, _) in BUNDLE_DEFECTS.items():
        description, modality, edit, _ = DEFECTS[defect]
        build_series(tiny_nifti, data / folder, number, description, modality, edit, prefix=f"{defect}_")
    series = {s.number: s for s in find_series(data)}
    assert sorted(series) == [2, 3, 4, 5, 6, 7, 8, 9]

    workflow = ConfigWorkflow(config_file=INFER, workflow_type="infer", logging_file=False, device="cpu",
                              progress=False, num_steps=1, dataset_dir=str(data), output_dir=str(output),
                              staging_dir=str(staging))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pydicom.config, "pixel_data_handlers", [numpy_handler])
        workflow.initialize()
        workflow.run()
        with pytest.raises(SystemExit) as finished:
            workflow.finalize()
    report = json.loads((output / "failures.json").read_text())
    return {"data": data, "series": series, "output": output, "staging": staging, "exit_code": finished.value.code,
            "report": report}


@pytest.mark.slow
@pytest.mark.parametrize("defect", list(BUNDLE_DEFECTS))
def test_batch_run_lists_each_bad_series_with_its_reason(defect, batch_run):
    number, _, fragment = BUNDLE_DEFECTS[defect]
    series = batch_run["series"][number]
    records = [r for r in batch_run["report"]["failures"] if Path(r["case"]).name == series.name]
    assert len(records) == 1, batch_run["report"]["failures"]
    record = records[0]
    assert record["case"] == str(batch_run["staging"] / series.name)
    assert record["error"].startswith(f"ValueError: {record['case']}: DICOM {series.label} cannot be read as a volume")
    assert fragment in record["error"]
    assert not list(batch_run["output"].glob(f"{series.name}*"))


@pytest.mark.slow
def test_batch_run_scores_the_good_series_beside_the_bad_ones(batch_run):
    report, output = batch_run["report"], batch_run["output"]
    assert batch_run["exit_code"] == 1
    assert report["num_completed"] == 2 and report["num_failed"] == len(BUNDLE_DEFECTS)
    for number in (GOOD, T2):
        name = batch_run["series"][number].name
        assert (output / f"{name}_anomaly_map.nii.gz").is_file()
        assert (output / f"{name}_anomaly_mask.nii.gz").is_file()
        assert nib.load(output / f"{name}_anomaly_map.nii.gz").shape[:3] == (91, 109, 91)
        assert not any(Path(r["case"]).name == name for r in report["failures"])


@pytest.mark.slow
def test_batch_run_scores_a_mixed_folder_series_by_series(batch_run):
    """``export/`` is refused as one image (it holds three series) yet its T1 is scored and the other two fail."""
    export = [batch_run["series"][n] for n in (GOOD, 4, 5)]
    with pytest.raises(ValueError, match="holds 3 DICOM series") as raised:
        check_series_folder(batch_run["data"] / "export")
    assert all(series.label in str(raised.value) for series in export)
    failed = {Path(r["case"]).name for r in batch_run["report"]["failures"]}
    assert export[0].name not in failed and {export[1].name, export[2].name} <= failed
    assert (batch_run["output"] / f"{export[0].name}_anomaly_map.nii.gz").is_file()


@pytest.mark.slow
def test_batch_run_warns_about_a_series_not_t1_by_its_header(batch_run):
    t2 = batch_run["series"][T2]
    assert batch_run["report"]["warnings"] == [{
        "case": str(batch_run["staging"] / t2.name),
        "warning": f"DICOM {t2.label}: {NOT_T1} (description 'T2 FLAIR'); the model is trained on T1 brain scans, "
                   "so its map of another contrast is not meaningful",
    }]


@pytest.mark.slow
def test_batch_run_keeps_patient_identifiers_out_of_names_and_failures(batch_run):
    cases = [p.name for folder in (batch_run["output"], batch_run["staging"]) for p in folder.iterdir()]
    assert all(name.startswith("series") or name in ("failures.json", "threshold.json") for name in cases), cases
    names = [p.name for folder in (batch_run["output"], batch_run["staging"]) for p in folder.rglob("*")]
    text = (batch_run["output"] / "failures.json").read_text()
    assert [n for n in names if PATIENT_FIELDS.search(n)] == [] and not PATIENT_FIELDS.search(text)
