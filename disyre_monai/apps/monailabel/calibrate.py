"""MONAI Label calibration task: the site threshold of the served (or a patient's) weights, from healthy studies.

``POST /scoring/disyre_calibrate`` (or 3D Slicer's "Run scoring") scores the datastore's images tagged healthy
(or the ``images`` named) with the bundle's inference and writes the threshold at ``fpr`` into the calibration
card next to the weights, as ``disyre-monai calibrate`` does; every later label map uses it and says so.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from disyre_monai.apps.monailabel._compat import require_monailabel
from disyre_monai.apps.monailabel.datastore import image_ids, selected_images
from disyre_monai.apps.monailabel.weights import weights_path
from disyre_monai.io import atomic_write_json

require_monailabel()

from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException  # noqa: E402
from monailabel.interfaces.tasks.scoring import ScoringMethod  # noqa: E402

logger = logging.getLogger(__name__)

RUNS_DIR = "calibration_runs"


class DisyreCalibrationTask(ScoringMethod):
    """Calibrate the anomaly-mask threshold on healthy studies of the datastore.

    Request options: ``fpr`` (default 0.01: one healthy brain voxel in a hundred above the threshold),
    ``images`` (comma-separated image ids; empty: every image tagged healthy), ``weights_name`` (empty: the
    served weights; a name: a patient's own weights), ``device``. The scans and the card are kept in
    ``<bundle>/calibration_runs/run_<time>/`` (``datalist.json``, ``calibration_failures.json`` when a scan
    failed); the card itself is written next to the weights.

    Args:
        path: the bundle folder.
        conf: the app's ``--conf`` settings (``preprocess``, ``skull_strip``: as for inference).
    """

    def __init__(self, path: str, conf: dict[str, str] | None = None) -> None:
        super().__init__("Set the anomaly-mask threshold on healthy studies (false-positive rate on their brains)")
        self.bundle_path = str(path)
        self.conf = conf or {}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        from disyre_monai.apps.monailabel.infer import preprocess_setting, skull_strip_setting
        from disyre_monai.commands.bundle import bundle_parser
        from disyre_monai.commands.calibrate import calibrate_site

        try:
            weights = weights_path(self.bundle_path, request.get("weights_name") or None)
            fpr = float(request.get("fpr", 0.01))
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"calibration request: {error}") from None
        try:
            images = selected_images(datastore, image_ids(request.get("images")), healthy_only=True)
        except ValueError as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(error)) from None
        if not images:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT,
                                      "no image tagged healthy (image info {\"healthy\": true}) to calibrate on.")
        run_dir = Path(self.bundle_path, RUNS_DIR, datetime.now().strftime("run_%Y%m%d_%H%M%S_%f"))
        datalist = atomic_write_json(run_dir / "datalist.json", {"healthy": [{"image": e["image"]} for e in images]})
        settings: dict[str, Any] = {"preprocess": preprocess_setting(self.conf)}
        if request.get("device"):
            settings["device"] = request["device"] if isinstance(request["device"], str) else request["device"][0]
        skull_strip = skull_strip_setting(self.conf)
        if skull_strip is not None:
            options = bundle_parser(self.bundle_path).get("preprocess_options") or {}
            settings["preprocess_options"] = {**options, "skull_strip": skull_strip}
        studies = os.path.commonpath([os.path.dirname(os.path.abspath(e["image"])) for e in images])
        try:
            card = calibrate_site(studies, fpr=fpr, model_path=weights, datalist=str(datalist), split="healthy",
                                  bundle_dir=self.bundle_path, progress=False, **settings)
        except ValueError as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"calibration request: {error}") from None
        except RuntimeError as error:
            raise MONAILabelException(MONAILabelError.APP_ERROR, str(error)) from None
        card = {**card, "images": [e["id"] for e in images], "run_dir": str(run_dir),
                "weights_name": request.get("weights_name") or None}
        atomic_write_json(run_dir / "calibration.json", card)
        logger.info(f"calibrated {os.path.basename(os.path.dirname(weights))} weights: {json.dumps(card)}")
        return card
