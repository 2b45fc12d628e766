"""MONAI Label on a real PACS: Orthanc with its DICOMweb plugin on 127.0.0.1 as the studies of the DISYRE server.

A de-identified DICOM series of a demo patient is uploaded to a throw-away Orthanc; the server (offline guard on:
it may reach this machine only) lists it, scores it through the REST API, and stores the anomaly mask (DICOM SEG)
and the map overlay (secondary capture) back into Orthanc, under the same study and on the source's slices.
"""

import gzip
import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is an optional extra (see docs/monailabel.md)")
requests = pytest.importorskip("requests")
pytestmark = pytest.mark.slow

from requests_toolbelt.multipart.decoder import MultipartDecoder  # noqa: E402

from disyre_monai.apps.monailabel.server import serve_in_background  # noqa: E402
from disyre_monai.dicom import DicomSeriesReader, nifti_to_dicom_series  # noqa: E402
from tests.apps.conftest import offline_env  # noqa: E402
from tests.pacs import orthanc_server, require_orthanc  # noqa: E402


@pytest.fixture(scope="module")
def pacs_server(tmp_path_factory, demo_patient):
    """Orthanc holding the demo patient's series, and the DISYRE MONAI Label server reading from it."""
    require_orthanc()
    root = tmp_path_factory.mktemp("pacs_e2e")
    files = nifti_to_dicom_series(demo_patient, root / "series", uid_seed="pacs-e2e", patient_id="DEMO^PACS")
    with orthanc_server(root / "orthanc") as pacs:
        pacs.upload(files)
        log = root / "server.log"
        with serve_in_background(pacs.dicomweb_url, app_dir=root / "app", log_file=log,
                                 env=offline_env(root / "guard"), timeout=240) as url:
            yield {"url": url, "pacs": pacs, "log": log, "source": pydicom.dcmread(files[0]), "files": files,
                   "root": root, "patient": demo_patient}


def _parts(response) -> dict[bytes, bytes]:
    return {p.headers[b"Content-Disposition"].split(b"name=")[1].split(b";")[0].strip(b'"'): p.content
            for p in MultipartDecoder(response.content, response.headers["Content-Type"]).parts}


def test_the_server_lists_the_pacs_series_and_stores_seg_and_overlay_in_its_study(pacs_server, tmp_path):
    url, pacs, source = pacs_server["url"], pacs_server["pacs"], pacs_server["source"]
    series_uid, study_uid = str(source.SeriesInstanceUID), str(source.StudyInstanceUID)
    stats = requests.get(f"{url}/datastore/", params={"output": "stats"}, timeout=120)
    assert stats.status_code == 200 and stats.json()["total"] == 1, stats.text  # the one MR series of the PACS
    sample = requests.post(f"{url}/activelearning/random", json={}, timeout=120)  # OHIF's "next sample"
    assert sample.status_code == 200 and sample.json()["id"] == series_uid, sample.text

    r = requests.post(f"{url}/infer/disyre", params={"image": series_uid, "output": "all"}, timeout=900)
    assert r.status_code == 200, r.text[:2000]
    parts = _parts(r)
    result = json.loads(parts[b"params"])
    stored = result["dicom_results"]
    assert stored["stored"] and stored["study"] == study_uid and stored["instances"] == 1 + len(pacs_server["files"])

    # Orthanc lists the source, the SEG and the overlay under the one study
    series = {s["SeriesInstanceUID"]: s for s in pacs.series_of_study(study_uid)}
    assert series[series_uid]["Modality"] == "MR"
    assert series[stored["seg_series"]]["Modality"] == "SEG" and series[stored["seg_series"]]["instances"] == 1
    assert series[stored["overlay_series"]]["instances"] == len(pacs_server["files"])

    # the SEG, pulled back from the PACS, is the label map the client received, on the source's slices
    label = nib.Nifti1Image.from_bytes(gzip.decompress(parts[b"image"]))
    (seg_file,) = pacs.pull_series(stored["seg_series"], tmp_path / "seg")
    seg = pydicom.dcmread(seg_file)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert seg.NumberOfFrames == len(pacs_server["files"])
    frames = np.unpackbits(np.frombuffer(seg.PixelData, np.uint8), bitorder="little")
    frames = frames[: seg.NumberOfFrames * seg.Rows * seg.Columns].reshape(seg.NumberOfFrames, seg.Rows, seg.Columns)
    label_frames = np.asarray(label.dataobj).transpose(2, 1, 0)
    assert label_frames.any() and np.array_equal(frames, label_frames > 0)
    # the client's label map lies on the series' grid as the bundle reads it
    from monai.transforms import LoadImage

    volume = LoadImage(reader=DicomSeriesReader, image_only=True)(str(pacs_server["files"][0].parent))
    assert label.shape == tuple(volume.shape) and np.allclose(label.affine, np.asarray(volume.affine), atol=1e-4)

    # the overlay: one RGB image per source slice, at the source slice's position
    overlay = sorted(pacs.pull_series(stored["overlay_series"], tmp_path / "overlay"))
    images = sorted((pydicom.dcmread(p) for p in overlay), key=lambda d: int(d.InstanceNumber))
    sources = [pydicom.dcmread(p) for p in pacs_server["files"]]
    assert [list(map(float, d.ImagePositionPatient)) for d in images] == \
        [list(map(float, d.ImagePositionPatient)) for d in sources]
    assert images[0].PhotometricInterpretation == "RGB" and images[0].StudyInstanceUID == study_uid

    log = pacs_server["log"].read_text(errors="replace")
    assert "OFFLINE-GUARD active" in log and "OFFLINE-GUARD blocked" not in log, "no connection off this machine"
    assert "DEMO^PACS" not in log, "the server log must not name the patient"
