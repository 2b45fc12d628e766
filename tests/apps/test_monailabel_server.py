"""End to end: the real MONAI Label server on 127.0.0.1, driven over HTTP (needs the `label` extra).

One server for the module (``disyre-monai label`` in a subprocess, outbound connections blocked): upload a demo
scan, get the label map and the float heatmap, compare the heatmap with the bundle's own inference, send bad
requests, then fine-tune on unlabelled healthy-tagged scans and see the served model file replaced.
"""

import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is an optional extra (see docs/monailabel.md)")
requests = pytest.importorskip("requests")
pytestmark = pytest.mark.slow

from requests_toolbelt.multipart.decoder import MultipartDecoder  # noqa: E402

from disyre_monai.apps.monailabel.app import BUNDLE_SUBDIR  # noqa: E402
from disyre_monai.apps.monailabel.server import serve_in_background  # noqa: E402
from disyre_monai.data.demo import demo_datalist  # noqa: E402
from tests.apps.conftest import bundle_anomaly_map, offline_env  # noqa: E402


def _nifti(content: bytes) -> nib.Nifti1Image:
    """A NIfTI image from the bytes of a ``.nii`` or ``.nii.gz`` file."""
    return nib.Nifti1Image.from_bytes(gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content)


def _wait_for_training(url: str, timeout: float = 600.0) -> dict:
    """Poll ``GET /train/`` until the last training task has ended; return its status."""
    deadline = time.time() + timeout
    while (status := requests.get(f"{url}/train/", timeout=60).json())["status"] in ("SUBMITTED", "RUNNING"):
        assert time.time() < deadline, "training did not finish"
        time.sleep(1)
    return status


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_patient):
    root = tmp_path_factory.mktemp("label_e2e")
    studies, app_dir, log = root / "studies", root / "app", root / "server.log"
    env = offline_env(root / "guard")
    with serve_in_background(studies, app_dir=app_dir, log_file=log, env=env, timeout=240) as url:
        with open(demo_patient, "rb") as f:
            r = requests.put(f"{url}/datastore/image", params={"image": "patient"},
                             files={"file": ("patient.nii.gz", f)}, timeout=60)
        assert r.status_code == 200 and r.json() == {"image": "patient"}, r.text
        yield {"url": url, "studies": studies, "app": app_dir, "log": log, "patient": demo_patient}


def test_server_binds_loopback_offline_and_serves_the_bundle(server):
    log = server["log"].read_text(errors="replace")
    assert f"Uvicorn running on {server['url']}" in log, "the default host must be 127.0.0.1"
    info = requests.get(f"{server['url']}/info/", timeout=30).json()
    model = info["models"]["disyre"]
    assert model["labels"] == {"anomaly": 1} and model["dimension"] == 3
    assert model["config"]["threshold"] == pytest.approx(0.39)
    assert "disyre" in info["trainers"]
    assert "OFFLINE-GUARD active" in log and "OFFLINE-GUARD blocked" not in log, "no connection off this machine"


def test_label_map_heatmap_and_scores_match_the_bundle(server, tmp_path):
    url, patient = server["url"], server["patient"]
    # 1. what 3D Slicer / OHIF get: a uint8 label map, with the case scores in the JSON part
    r = requests.post(f"{url}/infer/disyre", params={"image": "patient", "output": "all"}, timeout=600)
    assert r.status_code == 200, r.text
    parts = {p.headers[b"Content-Disposition"].split(b"name=")[1].split(b";")[0].strip(b'"'): p.content
             for p in MultipartDecoder(r.content, r.headers["Content-Type"]).parts}
    result = json.loads(parts[b"params"])
    label = _nifti(parts[b"image"])
    assert result["output"] == "label_map" and result["label_names"] == {"anomaly": 1}
    assert label.get_data_dtype() == np.uint8

    # 2. the float heatmap, through the REST parameter result_dtype=float32
    r = requests.post(f"{url}/infer/disyre", params={"image": "patient", "output": "image"},
                      data={"params": json.dumps({"result_dtype": "float32"})}, timeout=600)
    assert r.status_code == 200, r.text
    heatmap = _nifti(r.content)
    assert heatmap.get_data_dtype() == np.float32

    # 3. the bundle's own inference of the same scan with the same weights
    model = server["app"] / BUNDLE_SUBDIR / "models" / "model.pt"
    reference = bundle_anomaly_map(patient, model, tmp_path / "bundle")
    source = nib.load(patient)
    amap = reference.get_fdata()
    for image in (label, heatmap):
        assert image.shape == source.shape and np.allclose(image.affine, source.affine, atol=1e-4)
    assert np.allclose(heatmap.get_fdata(), amap, atol=1e-5), "server heatmap != bundle inference"
    assert np.array_equal(np.asarray(label.dataobj), amap >= 0.39), "label map != heatmap >= bundle threshold"
    brain = np.asarray(source.dataobj) > 0
    scores = result["scores"]
    assert scores["max"] == pytest.approx(amap.max(), abs=1e-5)
    assert scores["mean"] == pytest.approx(amap[brain].mean(), abs=1e-5)
    assert scores["top_k_mean"] == pytest.approx(np.sort(amap[brain])[-100:].mean(), abs=1e-5)
    assert scores["anomalous_voxels"] == (amap[brain] >= 0.39).sum() > 0


def test_bad_requests_get_http_errors_with_a_message_and_the_server_keeps_serving(server, tmp_path):
    url = server["url"]
    r = requests.post(f"{url}/infer/no_such_model", params={"image": "patient"}, timeout=60)
    assert r.status_code == 404 and "no_such_model" in r.json()["detail"] and "disyre" in r.json()["detail"]
    r = requests.post(f"{url}/train/no_such_model", json={}, timeout=60)
    assert r.status_code == 404 and "no_such_model" in r.json()["detail"]
    r = requests.put(f"{url}/datastore/image", params={"image": "notes"},
                     files={"file": ("notes.txt", b"not an image")}, timeout=60)
    assert r.status_code == 400 and r.json()["detail"].startswith("notes.txt: unsupported file type")
    r = requests.put(f"{url}/datastore/image", params={"image": "broken"},
                     files={"file": ("broken.nii.gz", b"not gzip")}, timeout=60)
    assert r.status_code == 400 and r.json()["detail"].startswith("broken.nii.gz: cannot be read as an image")
    r = requests.post(f"{url}/infer/disyre", files={"file": ("notes.txt", b"not an image")}, timeout=60)
    assert r.status_code == 400 and "unsupported file type" in r.json()["detail"]
    r = requests.post(f"{url}/infer/disyre", params={"image": "patient"},
                      data={"params": json.dumps({"threshold": "high"})}, timeout=60)
    assert r.status_code == 400 and "threshold" in r.json()["detail"]
    # training with nothing to train on ends in ERROR, with the reason in the task's output
    r = requests.post(f"{url}/train/disyre", json={"healthy_only": True, "device": "cpu"}, timeout=60)
    assert r.status_code == 200, r.text
    status = _wait_for_training(url)
    assert status["status"] == "ERROR" and "no image tagged healthy" in "\n".join(status["details"])
    # still serving, and nothing bad reached the datastore
    r = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=60)
    assert r.status_code == 200 and not {"notes", "broken"} & set(r.json()["objects"])


def test_training_on_unlabelled_images_replaces_the_served_model(server):
    url, studies = server["url"], server["studies"]
    model = server["app"] / BUNDLE_SUBDIR / "models" / "model.pt"
    before, mtime = _sha256(model), model.stat().st_mtime
    healthy = demo_datalist()["training"][:2]
    for i, entry in enumerate(healthy):  # tagged healthy at upload, or afterwards through the image info
        name = Path(entry["image"]).name
        image_id = name[: -len(".nii.gz")]
        tag_now = {"params": json.dumps({"healthy": True})} if i == 0 else {}
        with open(entry["image"], "rb") as f:
            r = requests.put(f"{url}/datastore/image", params={"image": image_id}, files={"file": (name, f)},
                             data=tag_now, timeout=60)
        assert r.status_code == 200, r.text
        if not tag_now:
            r = requests.put(f"{url}/datastore/image/info", params={"image": image_id},
                             data={"info": json.dumps({"healthy": True})}, timeout=60)
            assert r.status_code == 200, r.text
    assert not list(studies.glob("labels/final/*")), "no label anywhere"
    request = {"healthy_only": True, "max_epochs": 1, "epoch_length": 2, "num_workers": 0, "device": "cpu"}
    r = requests.post(f"{url}/train/disyre", json=request, timeout=60)
    assert r.status_code == 200, r.text
    status = _wait_for_training(url)
    assert status["status"] == "DONE", "\n".join(status.get("details", []))
    assert _sha256(model) != before and model.stat().st_mtime > mtime
    stats = requests.get(f"{url}/info/", timeout=60).json()["train_stats"]["disyre"]
    assert stats["images"] == sorted(Path(e["image"]).name[: -len(".nii.gz")] for e in healthy)
    assert stats["iterations"] == 2 and stats["pretrained"] is True
    assert Path(stats["run_dir"], "models", "model.pt").read_bytes() == model.read_bytes()
    assert "OFFLINE-GUARD blocked" not in server["log"].read_text(errors="replace")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
