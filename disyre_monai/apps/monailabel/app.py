"""The MONAI Label app class: one DISYRE model ("disyre") for inference and label-free training."""

from __future__ import annotations

import logging
import os

import disyre_monai
from disyre_monai.apps.monailabel._compat import require_monailabel

require_monailabel()

from monailabel.config import settings  # noqa: E402
from monailabel.interfaces.app import MONAILabelApp  # noqa: E402
from monailabel.interfaces.datastore import Datastore  # noqa: E402

from disyre_monai.apps.monailabel.calibrate import DisyreCalibrationTask  # noqa: E402
from disyre_monai.apps.monailabel.datastore import VolumeDatastore  # noqa: E402
from disyre_monai.apps.monailabel.dicomweb import DicomWebStudies, dicomweb_studies  # noqa: E402
from disyre_monai.apps.monailabel.infer import LABELS, DisyreInferTask  # noqa: E402
from disyre_monai.apps.monailabel.train import DisyreTrainTask  # noqa: E402

logger = logging.getLogger(__name__)

#: the model name clients see (``/infer/disyre``, ``/train/disyre``).
MODEL_NAME = "disyre"
#: the calibration task (``/scoring/disyre_calibrate``).
CALIBRATION_NAME = "disyre_calibrate"
#: where, inside the app folder, the served bundle lives (prepared by ``server.prepare_app``).
BUNDLE_SUBDIR = os.path.join("model", MODEL_NAME)


class DisyreLabelApp(MONAILabelApp):
    """DISYRE as a MONAI Label app: inference and training task ``"disyre"`` and the calibration task
    ``"disyre_calibrate"`` (a scoring method) over a local studies folder.

    The bundle is read from ``<app_dir>/model/disyre`` (a writable copy made by
    :func:`~disyre_monai.apps.monailabel.server.prepare_app`); nothing is looked up or downloaded at start-up.
    A local studies folder becomes a :class:`~disyre_monai.apps.monailabel.datastore.VolumeDatastore`; a
    DICOMweb address (a PACS such as Orthanc) a :class:`~disyre_monai.apps.monailabel.dicomweb.DicomWebStudies`
    (MR series read as DICOM, results stored back as a SEG and an overlay series; nothing downloaded); XNAT/DSA
    addresses use MONAI Label's own remote datastores (which may download their own tools).

    Args:
        app_dir: the app folder (holds ``main.py``, ``model/disyre``, ``logs``).
        studies: the studies folder (or a remote datastore address).
        conf: ``--conf`` settings passed to the tasks (e.g. ``preload true``).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.disyre_bundle = os.path.join(app_dir, BUNDLE_SUBDIR)
        if not os.path.isdir(self.disyre_bundle):
            raise FileNotFoundError(
                f"DisyreLabelApp: no bundle in {self.disyre_bundle}; start the server with `disyre-monai label "
                "--studies DIR`, which prepares the app folder."
            )
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="DISYRE brain MRI anomaly detection",
            description="Unsupervised anomaly maps for skull-stripped brain MRI (DISYRE); label 1 = anomaly.",
            version=disyre_monai.__version__,
            labels=dict(LABELS),
        )

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            if settings.MONAI_LABEL_DATASTORE.lower() in ("xnat", "dsa"):
                return super().init_datastore()
            return dicomweb_studies(self.studies, self.app_dir)
        logger.info(f"Init volume datastore for: {self.studies}")
        return VolumeDatastore(
            self.studies,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self):
        store = self._datastore if isinstance(self._datastore, DicomWebStudies) else None
        return {MODEL_NAME: DisyreInferTask(self.disyre_bundle, self.conf, result_store=store)}

    def init_trainers(self):
        return {MODEL_NAME: DisyreTrainTask(self.disyre_bundle, self.conf)}

    def init_scoring_methods(self):
        return {CALIBRATION_NAME: DisyreCalibrationTask(self.disyre_bundle, self.conf)}
