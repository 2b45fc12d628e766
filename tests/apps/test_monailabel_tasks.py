"""The MONAI Label tasks in-process (needs the `label` extra): inference against the bundle, datastore, training."""

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("monailabel", reason="MONAI Label is an optional extra (see docs/monailabel.md)")

from monailabel.interfaces.exception import MONAILabelException  # noqa: E402

from disyre_monai.apps.monailabel._compat import _stand_in, import_monailabel  # noqa: E402
from disyre_monai.apps.monailabel.app import BUNDLE_SUBDIR  # noqa: E402
from disyre_monai.apps.monailabel.datastore import VolumeDatastore, is_healthy, training_images  # noqa: E402
from disyre_monai.apps.monailabel.infer import DisyreInferTask  # noqa: E402
from disyre_monai.apps.monailabel.server import prepare_app  # noqa: E402
from disyre_monai.apps.monailabel.train import DisyreTrainTask, split_images  # noqa: E402
from tests.apps.conftest import BUNDLE, bundle_anomaly_map  # noqa: E402


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    return prepare_app(tmp_path_factory.mktemp("app"), BUNDLE)


def test_prepare_app_copies_the_bundle_and_keeps_trained_weights(tmp_path):
    app = prepare_app(tmp_path / "app", BUNDLE)
    model = app / BUNDLE_SUBDIR / "models" / "model.pt"
    assert (app / "main.py").read_text().count("DisyreLabelApp") == 1
    assert model.read_bytes() == (BUNDLE / "models" / "model.pt").read_bytes()
    assert (app / BUNDLE_SUBDIR / "configs" / "inference.json").is_file()
    template = app / BUNDLE_SUBDIR / "models" / "template_brain.nii.gz"  # the model space card's template
    assert template.read_bytes() == (BUNDLE / "models" / "template_brain.nii.gz").read_bytes()
    model.write_bytes(b"fine-tuned")
    prepare_app(app, BUNDLE)
    assert model.read_bytes() == b"fine-tuned", "a restart must keep the fine-tuned weights"
    prepare_app(app, BUNDLE, reset_model=True)
    assert model.read_bytes() == (BUNDLE / "models" / "model.pt").read_bytes()
    with pytest.raises(FileNotFoundError, match="misses configs/inference.json"):
        prepare_app(tmp_path / "other", tmp_path)


def test_torchvision_stand_in_is_gone_after_import():
    import_monailabel()
    module = sys.modules.get("torchvision")
    assert module is None or getattr(module, "__file__", None), "the stand-in must not stay in sys.modules"
    with pytest.raises(ImportError, match="cannot be imported \\(why\\)"):
        _stand_in("why")["torchvision.utils"].make_grid()


def test_infer_task_matches_the_bundle_for_an_lps_scan(app_dir, demo_patient_lps, tmp_path):
    bundle = app_dir / BUNDLE_SUBDIR
    task = DisyreInferTask(str(bundle), {})
    assert task.labels == {"anomaly": 1} and task.dimension == 3
    assert task.config()["threshold"] == pytest.approx(0.39) and task.config()["top_k"] == 100
    heatmap_file, result = task({"image": str(demo_patient_lps), "device": "cpu", "result_dtype": "float32",
                                 "threshold": 0.2})
    heatmap = nib.load(heatmap_file)
    reference = bundle_anomaly_map(demo_patient_lps, bundle / "models" / "model.pt", tmp_path / "bundle")
    source = nib.load(demo_patient_lps)
    assert heatmap.get_data_dtype() == np.float32 and heatmap.shape == source.shape
    assert np.allclose(heatmap.affine, source.affine, atol=1e-4)
    assert np.allclose(heatmap.get_fdata(), reference.get_fdata(), atol=1e-5)
    amap = reference.get_fdata()
    assert result["output"] == "heatmap" and result["threshold"] == 0.2
    scores = result["scores"]
    assert scores["max"] == pytest.approx(amap.max(), abs=1e-5)
    brain = np.asarray(source.dataobj) > 0
    assert scores["brain_voxels"] == brain.sum() and scores["mean"] == pytest.approx(amap[brain].mean(), abs=1e-5)
    assert scores["anomalous_voxels"] == (amap[brain] >= 0.2).sum()

    label_file, result = task({"image": str(demo_patient_lps), "device": "cpu", "result_extension": ".nrrd",
                               "result_dtype": "uint8"})
    assert label_file.endswith(".nrrd") and result["output"] == "label_map"
    from monai.transforms import LoadImage

    label = LoadImage(image_only=True)(label_file)  # read through ITK, as 3D Slicer reads NRRD
    assert np.allclose(label.affine, source.affine, atol=1e-4)
    assert set(np.unique(label.numpy())) == {0, 1}
    assert np.array_equal(label.numpy(), amap >= 0.39), "the label map must be heatmap >= the bundle threshold"


def test_infer_task_rejects_bad_inputs_before_inference(app_dir, tmp_path, demo_patient):
    task = DisyreInferTask(str(app_dir / BUNDLE_SUBDIR), {})
    for option, value in (("threshold", "high"), ("top_k", 0), ("result_dtype", "pixels")):
        with pytest.raises(MONAILabelException) as error:
            task({"image": str(demo_patient), "device": "cpu", option: value})
        assert option in error.value.msg and repr(value) in error.value.msg
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(MONAILabelException) as error:
        task({"image": str(text), "device": "cpu"})
    assert "notes.txt: unsupported file type" in error.value.msg
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"hello")
    with pytest.raises(MONAILabelException) as error:
        task({"image": str(fake), "device": "cpu"})
    assert "fake.nii.gz: cannot be used as a brain MRI volume" in error.value.msg


def test_datastore_rejects_non_volumes_and_lists_healthy_images(tmp_path, demo_patient):
    store = VolumeDatastore(str(tmp_path / "studies"), auto_reload=False)
    text = tmp_path / "upload.txt"
    text.write_text("hello")
    with pytest.raises(MONAILabelException) as error:
        store.add_image("notes", str(text), {})
    assert "notes.txt: unsupported file type" in error.value.msg
    assert store.list_images() == []
    store.add_image("healthy_one", str(demo_patient), {"healthy": True})
    store.add_image("patient", str(demo_patient), {})
    store.add_image("healthy_two", str(demo_patient), {"healthy": "yes"})
    assert [e["id"] for e in training_images(store)] == ["healthy_one", "healthy_two", "patient"]
    assert [e["id"] for e in training_images(store, healthy_only=True)] == ["healthy_one", "healthy_two"]
    assert not is_healthy({"healthy": "no"}) and not is_healthy({})


def test_split_images_keeps_enough_for_training():
    images = [{"id": str(i)} for i in range(10)]
    train, val = split_images(images, 0.2)
    assert [e["id"] for e in val] == ["8", "9"] and len(train) == 8
    few = images[:2]
    assert split_images(few, 0.2) == (few, few), "too few images to hold some out: validate on the training ones"
    assert split_images(images[:1], 0.9) == (images[:1], images[:1])


def test_train_task_without_images_says_so(app_dir, tmp_path, demo_patient):
    task = DisyreTrainTask(str(app_dir / BUNDLE_SUBDIR), {})
    assert {"healthy_only", "max_epochs", "epoch_length", "pretrained"} <= set(task.config())
    store = VolumeDatastore(str(tmp_path / "studies"), auto_reload=False)
    store.add_image("patient", str(demo_patient), {})
    with pytest.raises(MONAILabelException) as error:
        task({"healthy_only": True}, store)
    assert "no image tagged healthy" in error.value.msg
    with pytest.raises(MONAILabelException) as error:
        task({"max_epochs": 0}, store)
    assert "max_epochs must be in [1" in error.value.msg


class _RefusingPacs:
    def store(self, datasets):
        raise ConnectionError("PACS unreachable")


def test_a_pacs_refusing_the_results_does_not_fail_the_request(app_dir, demo_patient, tmp_path):
    """The viewer still gets its label map; the JSON result says the DICOM results were not stored, and why."""
    from disyre_monai.dicom import nifti_to_dicom_series

    series = tmp_path / "series"
    nifti_to_dicom_series(demo_patient, series, uid_seed="refused")
    task = DisyreInferTask(str(app_dir / BUNDLE_SUBDIR), {}, result_store=_RefusingPacs())
    label_file, result = task({"image": str(series), "device": "cpu"})
    assert nib.load(label_file).shape == nib.load(demo_patient).shape
    assert result["dicom_results"] == {"stored": False, "error": "ConnectionError: PACS unreachable"}


def test_the_app_uses_the_site_calibration_next_to_its_weights(tmp_path, demo_patient):
    """After 'disyre-monai calibrate' on the app's weights, the label maps use the site's threshold and say so."""
    from disyre_monai.metrics.site_calibration import write_calibration

    bundle = prepare_app(tmp_path / "app", BUNDLE) / BUNDLE_SUBDIR
    task = DisyreInferTask(str(bundle), {})
    assert task.threshold == pytest.approx(0.39) and task.calibration["calibrated"] is False
    write_calibration(bundle / "models" / "model.pt", 0.25, 0.01, 0.0099, 1000, ["healthy_1"])
    task = DisyreInferTask(str(bundle), {})
    assert task.threshold == 0.25 and task.config()["threshold"] == 0.25
    label_file, result = task({"image": str(demo_patient), "device": "cpu"})
    assert result["threshold"] == 0.25 and result["calibration"]["calibrated"] and result["calibration"]["fpr"] == 0.01
    _, by_hand = task({"image": str(demo_patient), "device": "cpu", "threshold": 0.3})
    assert by_hand["calibration"] == {"calibrated": False, "note": "threshold given in the request"}

    # a fine-tuning replaces the weights and retires their card: the default threshold again, and the result says so
    from disyre_monai.apps.monailabel.train import publish_model, retire_calibration

    tuned = tmp_path / "tuned.pt"
    tuned.write_bytes((bundle / "models" / "model.pt").read_bytes())
    publish_model(tuned, bundle / "models" / "model.pt")
    retired = retire_calibration(bundle / "models" / "model.pt", tmp_path)
    assert retired == tmp_path / "calibration_of_previous_weights.json" and retired.is_file()
    _, after = task({"image": str(demo_patient), "device": "cpu"})
    assert after["threshold"] == pytest.approx(0.39) and after["calibration"]["calibrated"] is False

    # a card for other weights is refused with a clear error, not silently used
    write_calibration(bundle / "models" / "model.pt", 0.25, 0.01, 0.0099, 1000, ["healthy_1"])
    (bundle / "models" / "model.pt").write_bytes((bundle / "models" / "model.pt").read_bytes()[:-1] + b"x")
    with pytest.raises(MONAILabelException, match="made for other weights"):
        task({"image": str(demo_patient), "device": "cpu"})


def test_a_patients_own_weights_from_the_earlier_study_leave_the_served_ones_alone(tmp_path, demo_patient):
    """Fine-tune on the patient's earlier study under a weights name, calibrate those weights, score the follow-up
    with them; the served weights, their threshold and the other patients' maps do not change."""
    import shutil

    from disyre_monai.apps.monailabel.calibrate import DisyreCalibrationTask
    from disyre_monai.apps.monailabel.weights import weights_path

    bundle = prepare_app(tmp_path / "app", BUNDLE) / BUNDLE_SUBDIR
    served = (bundle / "models" / "model.pt").read_bytes()
    store = VolumeDatastore(str(tmp_path / "studies"), auto_reload=False)
    earlier = tmp_path / "earlier.nii.gz"
    shutil.copy(demo_patient, earlier)
    store.add_image("earlier", str(earlier), {})
    store.add_image("followup", str(demo_patient), {})

    trainer = DisyreTrainTask(str(bundle), {})
    finetune = json.loads((bundle / "configs" / "finetune.json").read_text())
    options = trainer._options({"preset": "finetune"})
    assert (options["learning_rate"], options["epoch_length"]) == (finetune["learning_rate"], finetune["epoch_length"])
    assert trainer._options({"preset": "finetune", "epoch_length": 7})["epoch_length"] == 7, "a value given wins"
    stats = trainer({"images": "earlier", "preset": "finetune", "weights_name": "patient-7", "max_epochs": 1,
                     "epoch_length": 2, "num_workers": 0, "device": "cpu"}, store)
    own = bundle / "models" / "patients" / "patient-7" / "model.pt"
    assert stats["images"] == ["earlier"] and stats["preset"] == "finetune" and stats["published_model"] == str(own)
    assert own.is_file() and own.read_bytes() != served
    assert (bundle / "models" / "model.pt").read_bytes() == served, "the served weights stay"
    with pytest.raises(MONAILabelException, match="images not in the datastore: nobody"):
        trainer({"images": "nobody"}, store)
    with pytest.raises(MONAILabelException, match="weights_name must be a plain name"):
        trainer({"weights_name": "../served"}, store)

    calibration = DisyreCalibrationTask(str(bundle), {})({"images": "earlier", "weights_name": "patient-7",
                                                          "fpr": 0.05, "device": "cpu"}, store)
    assert Path(calibration["path"]) == own.parent / "calibration.json" and calibration["images"] == ["earlier"]
    assert calibration["fpr"] == 0.05 and 0 < calibration["achieved_fpr"] <= 0.05
    assert not (bundle / "models" / "calibration.json").exists()

    task = DisyreInferTask(str(bundle), {})
    own_file, own_result = task({"image": str(demo_patient), "device": "cpu", "weights_name": "patient-7"})
    assert own_result["weights"] == "patient-7" and own_result["calibration"]["calibrated"]
    assert own_result["threshold"] == pytest.approx(calibration["threshold"])
    served_file, served_result = task({"image": str(demo_patient), "device": "cpu", "result_dtype": "float32"})
    assert served_result["weights"] == "served" and not served_result["calibration"]["calibrated"]
    expected = bundle_anomaly_map(demo_patient, bundle / "models" / "model.pt", tmp_path / "bundle_out")
    assert np.allclose(nib.load(served_file).get_fdata(), expected.get_fdata(), atol=1e-4), "back on the served"
    with pytest.raises(MONAILabelException, match="no weights 'patient-8'"):
        task({"image": str(demo_patient), "device": "cpu", "weights_name": "patient-8"})
    with pytest.raises(ValueError, match="plain name"):
        weights_path(bundle, "a/b")
