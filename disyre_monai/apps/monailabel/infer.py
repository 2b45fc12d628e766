"""MONAI Label inference task for the DISYRE bundle: a label map for the viewers, the heatmap on request."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from disyre_monai.apps.monailabel._compat import require_monailabel
from disyre_monai.apps.monailabel.transforms import AnomalyOutputd, CaseScoresd, wants_heatmap
from disyre_monai.apps.monailabel.validation import VOLUME_SUFFIXES, check_volume_array, volume_suffix
from disyre_monai.apps.monailabel.weights import weights_path
from disyre_monai.dicom.series import is_dicom_folder
from disyre_monai.metrics.site_calibration import threshold_record
from disyre_monai.preprocess.model_space import MISMATCH_MESSAGE
from disyre_monai.utils import check_int, check_number

require_monailabel()

from monai.transforms import Compose, CopyItemsd, Invertd, SqueezeDimd  # noqa: E402
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException  # noqa: E402
from monailabel.interfaces.tasks.infer_v2 import InferType  # noqa: E402
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: E402
from monailabel.utils.others.generic import file_ext  # noqa: E402

logger = logging.getLogger(__name__)

#: label map values, as the clients name them.
LABELS = {"anomaly": 1}
DEFAULT_TOP_K = 100
#: ``--conf preprocess VALUE``: raw scans (full head, native space) are preprocessed on the fly.
PREPROCESS_CONF = "preprocess"
#: ``--conf store_results false``: with a PACS (DICOMweb studies), do not store the SEG and overlay series back.
STORE_RESULTS_CONF = "store_results"
#: key of the float anomaly map on the input's grid, kept for the DICOM results.
DICOM_MAP_KEY = "dicom_anomaly_map"
#: key under which a request keeps the preprocessing it ran, for ``Invertd`` (those very transform objects).
PREPROCESSING_KEY = "disyre_preprocessing"
#: ``--conf skull_strip MODE``: how raw scans are skull-stripped (see ``PreprocessSettings.skull_strip``).
SKULL_STRIP_CONF = "skull_strip"
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")


def _switch(conf: dict[str, str], name: str, default: str) -> bool:
    value = str(conf.get(name, default)).strip().lower()
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"DisyreInferTask: --conf {name} must be true or false, got {value!r}.")
    return value in TRUE_WORDS


def preprocess_setting(conf: dict[str, str]) -> bool:
    """The app's ``--conf preprocess true|false`` (default false).

    Raises:
        ValueError: for another value, naming the setting and what is allowed.
    """
    return _switch(conf, PREPROCESS_CONF, "false")


def skull_strip_setting(conf: dict[str, str]) -> str | None:
    """The app's ``--conf skull_strip MODE`` (None when not set: the bundle's ``preprocess_options`` decide).

    Raises:
        ValueError: for a mode :data:`~disyre_monai.preprocess.skull_strip.SKULL_STRIP_MODES` does not hold.
    """
    from disyre_monai.preprocess.skull_strip import SKULL_STRIP_MODES

    if conf.get(SKULL_STRIP_CONF) is None:
        return None
    value = str(conf[SKULL_STRIP_CONF]).strip().lower()
    if value not in SKULL_STRIP_MODES:
        raise ValueError(f"DisyreInferTask: --conf {SKULL_STRIP_CONF} must be one of {', '.join(SKULL_STRIP_MODES)}, "
                         f"got {value!r}.")
    return value


class DisyreInferTask(BundleInferTask):
    """MONAI Label's bundle inference on the DISYRE bundle, answering with what a viewer can show.

    Preprocessing, network, weights (``models/model.pt``) and the inferer
    (:class:`~disyre_monai.inferers.SliceAnomalyInferer`) come from the bundle's ``configs/inference.json``
    through MONAI Label's ``BundleInferTask``. The bundle's own
    postprocessing (which writes NIfTI and PNG files for the batch command) is replaced by:

    1. case-level scores of the anomaly map inside the brain (max, mean, top-k mean, anomalous voxels and
       volume, in the model's space) into the JSON result, under ``"scores"``;
    2. MONAI's ``Invertd`` with the request's own preprocessing, as the bundle's postprocessing does: back onto
       the input's own grid (shape and affine): the exact inverse of the reorientation, and with ``--conf
       preprocess true`` of the resampling and the registration to the model's template too;
    3. the output: a uint8 label map (0 background, 1 anomaly where ``score >= threshold``), which is what the
       stock 3D Slicer and OHIF clients request (``result_dtype=uint8``), or the float32 anomaly heatmap when the
       request asks for a float ``result_dtype`` (REST: ``params={"result_dtype": "float32"}``).

    Options shown in the clients (and accepted in a request's params): ``threshold`` (default: the site calibration
    next to the weights in use, ``calibration.json`` from ``disyre-monai calibrate`` or the calibration request,
    else the bundle's ``default_threshold``; the JSON result's ``"calibration"`` says which), ``top_k`` and
    ``weights_name`` (empty: the served weights; a name: the patient's own weights from a training request with
    that ``weights_name``, see :mod:`~disyre_monai.apps.monailabel.weights`).

    Args:
        path: the bundle folder (``configs/inference.json``, ``configs/metadata.json``, ``models/model.pt``).
        conf: the app's ``--conf`` settings: ``preload`` (load the network at start); ``preprocess`` ("true": the
            studies are raw scans, taken into the model's space on the fly by the bundle's ``--preprocess True``:
            reorientation, resampling, skull stripping with ROBEX, registration to the template; "false", the
            default: scans must already be in the model's space, and one that is not is refused with the reason);
            ``skull_strip`` (with ``preprocess``: "atlas", "robex", ...; default: the bundle's
            ``preprocess_options``).
        top_k: default number of voxels averaged into the top-k score.
        result_store: the app's PACS datastore (:class:`~disyre_monai.apps.monailabel.dicomweb.DicomWebStudies`),
            or None. With one, each scored DICOM series gets its results stored in the PACS, in the series'
            study: the anomaly mask as DICOM SEG and the map as an RGB overlay series
            (:func:`~disyre_monai.dicom.results.dicom_results`), reported under ``"dicom_results"`` in the JSON
            result (``--conf store_results false`` turns this off).
        kwargs: passed to ``BundleInferTask``.

    Raises:
        FileNotFoundError: when the bundle misses its inference config or model file.
        ValueError: for a bad ``preprocess`` or ``skull_strip`` setting.
    """

    def __init__(self, path: str, conf: dict[str, str], top_k: int = DEFAULT_TOP_K, result_store=None,
                 **kwargs) -> None:
        for required in ("configs/inference.json", "configs/metadata.json", "models/model.pt"):
            if not os.path.isfile(os.path.join(path, required)):
                raise FileNotFoundError(f"DisyreInferTask: bundle {path} has no {required}.")
        kwargs.setdefault("type", InferType.SEGMENTATION)
        kwargs.setdefault("load_strict", True)
        # The bundle's LoadImaged reads optional "mask"/"label" keys; MONAI Label's array-input wrapper of it
        # requires every key, so keep the bundle's loader as it is.
        preprocess = preprocess_setting(conf or {})
        skull_strip = skull_strip_setting(conf or {})
        super().__init__(path, conf, extend_load_image=False, add_post_restore=False, **kwargs)
        self.bundle_config["preprocess"] = preprocess  # the bundle's --preprocess, read when the transforms are built
        if skull_strip is not None:
            options = dict(self.bundle_config.get("preprocess_options") or {})
            self.bundle_config["preprocess_options"] = {**options, "skull_strip": skull_strip}
        self.preprocess = preprocess
        self.result_store = result_store if _switch(conf or {}, STORE_RESULTS_CONF, "true") else None
        self.threshold, self.calibration = self.site_threshold()
        self.top_k = check_int("DisyreInferTask", "top_k", top_k, 1, 10**9)
        self.labels = dict(LABELS)
        self.dimension = 3  # the network is 2D, but the task takes and returns volumes
        self.shown_threshold = self.threshold  # the default the clients show (MONAI Label sends it back in requests)
        self._config.update({"threshold": self.threshold, "top_k": self.top_k, "weights_name": ""})
        if preprocess:
            self.description = f"{self.description} Raw scans are preprocessed on the fly (--conf preprocess true)."

    def weights(self, data: dict[str, Any] | None = None) -> str:
        """The weights file of a request (its ``weights_name``; the served weights without one).

        Raises:
            MONAILabelException: INVALID_INPUT for a bad or unknown name.
        """
        name = (data or {}).get("weights_name") or ""
        if not name:
            return str(self.bundle_config.get_parsed_content("model_path"))
        try:
            return weights_path(self.bundle_path, name)
        except (ValueError, FileNotFoundError) as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(error)) from None

    def _get_network(self, device, data):
        """MONAI Label's network loading and caching, for the weights the request names."""
        path = self.weights(data)
        if self.path != [path]:  # other weights than the cached network's: load them
            self.path = [path]
            self._networks.clear()
        return super()._get_network(device, data)

    def site_threshold(self, weights: str | None = None) -> tuple[float, dict[str, Any]]:
        """The default threshold now, and where it comes from: the site calibration next to the weights (the served
        ones by default; ``disyre-monai calibrate`` or the calibration request), else the bundle's default. Read
        again for every request, since fine-tuning replaces the weights (and retires their card) and a calibration
        may be written while the server runs.

        Raises:
            MONAILabelException: SERVER_ERROR when the card is unreadable or belongs to other weights.
        """
        config = self.bundle_config
        if "threshold_record" not in config or not str(config.get("threshold", "")).startswith("$"):
            threshold = check_number("DisyreInferTask", "bundle threshold", config.get_parsed_content("threshold"))
            return threshold, {"calibrated": False, "note": "threshold set in the bundle config"}
        served = weights is None or weights == str(config.get_parsed_content("model_path"))
        try:
            record = threshold_record(weights or config.get_parsed_content("model_path"),
                                      config.get_parsed_content("default_threshold"),
                                      config.get_parsed_content("calibration_file") if served else None)
        except (OSError, ValueError) as error:
            raise MONAILabelException(MONAILabelError.SERVER_ERROR, str(error)) from None
        if not record["calibrated"]:
            return record["threshold"], {"calibrated": False, "note": record["note"]}
        card = record["calibration"]
        keys = ("fpr", "achieved_fpr", "scans", "voxels", "created")
        return record["threshold"], {"calibrated": True, **{k: card.get(k) for k in keys}}

    def request_threshold(self, data: dict[str, Any]) -> float:
        """The request's threshold; the site threshold of now when the request leaves the option at the value
        the clients were shown (MONAI Label fills every option in), so a new calibration or fine-tuning applies."""
        requested = data.get("threshold")
        if requested is None or requested == self.shown_threshold:
            return self.site_threshold(self.weights(data))[0]
        return check_number("infer request", "threshold", requested)

    def request_options(self, data: dict[str, Any]) -> tuple[float, int, bool]:
        """``(threshold, top_k, heatmap)`` of a request, defaults filled in.

        Raises:
            MONAILabelException: INVALID_INPUT naming the bad option, its value and what is allowed.
        """
        try:
            threshold = self.request_threshold(data)
            top_k = check_int("infer request", "top_k", data.get("top_k", self.top_k), 1, 10**9)
            heatmap = wants_heatmap(data.get("result_dtype"))
        except ValueError as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(error)) from None
        return threshold, top_k, heatmap

    def run_pre_transforms(self, data: dict[str, Any], transforms: Sequence[Callable]) -> dict[str, Any]:
        """Check the request's options, then run the bundle's preprocessing; an unreadable or non-volume
        input becomes an INVALID_INPUT error (HTTP 400), before any inference."""
        self.request_options(data)
        source = data.get("image_path", data.get("image"))
        name = os.path.basename(source) if isinstance(source, str) else "the input image"
        if isinstance(source, str) and os.path.dirname(os.path.abspath(source)) == tempfile.gettempdir():
            name = f"the uploaded file (*{file_ext(source) or 'no suffix'})"  # MONAI Label renamed the upload
        if isinstance(source, str) and os.path.isfile(source) and volume_suffix(source) is None:
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                f"{name}: unsupported file type; send a single-channel 3D volume ({', '.join(VOLUME_SUFFIXES)}).",
            )
        try:
            out = super().run_pre_transforms(data, transforms)
            out[PREPROCESSING_KEY] = Compose(list(transforms))  # the objects that ran: Invertd checks their ids
            check_volume_array(out[self.input_key], name)
        except MONAILabelException:
            raise
        except Exception as error:  # loading and checking errors all mean "this is not a volume we can use"
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if MISMATCH_MESSAGE in reason:  # a scan outside the model's space: say why and how to serve such scans
                raise MONAILabelException(
                    MONAILabelError.INVALID_INPUT,
                    f"{reason} For this server: restart it with `disyre-monai label --preprocess True` to serve raw "
                    "scans (full head, native space).",
                ) from None
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT,
                f"{name}: cannot be used as a brain MRI volume ({reason[:300]}); send a single-channel 3D volume "
                f"({', '.join(VOLUME_SUFFIXES)}).",
            ) from None
        return out

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        threshold, top_k, heatmap = self.request_options(data or {})
        preprocessing = (data or {}).pop(PREPROCESSING_KEY, None)
        if preprocessing is None:
            raise RuntimeError("DisyreInferTask.post_transforms: the request's data holds no preprocessing to invert; "
                               "call it with the data that run_pre_transforms returned.")
        return [
            CaseScoresd(keys=self.output_label_key, mask_key="mask", threshold=threshold, top_k=top_k,
                        result_key=self.output_json_key),
            Invertd(keys=self.output_label_key, transform=preprocessing, orig_keys=self.input_key,
                    nearest_interp=False),
            SqueezeDimd(keys=self.output_label_key, dim=0),  # the writer takes (X, Y, Z)
            CopyItemsd(keys=self.output_label_key, names=DICOM_MAP_KEY),
            AnomalyOutputd(keys=self.output_label_key, threshold=threshold,
                           output="heatmap" if heatmap else "label_map"),
        ]

    def writer(self, data: dict[str, Any], extension=None, dtype=None):
        """MONAI Label's writer (NIfTI for a DICOM series folder), with the JSON result saying which output was
        written, and, for a DICOM series served from a PACS, the DICOM results stored there."""
        source = data.get("image_path")
        dicom_input = isinstance(source, str) and is_dicom_folder(source)
        if dicom_input and extension is None and not data.get("result_extension"):
            extension = ".nii.gz"  # the folder's name is a UID, whose dots are no file suffix
        anomaly_map = data.pop(DICOM_MAP_KEY, None)
        label_file, result = super().writer(data, extension, dtype)
        output = "heatmap" if wants_heatmap(data.get("result_dtype")) else "label_map"
        result = dict(result or {})
        result["output"] = output
        site_threshold, calibration = self.site_threshold(self.weights(data))
        result["weights"] = data.get("weights_name") or "served"
        result["threshold"] = threshold = result.get("scores", {}).get("threshold", site_threshold)
        result["calibration"] = calibration if threshold == site_threshold else {
            "calibrated": False, "note": "threshold given in the request"}
        if dicom_input and self.result_store is not None and anomaly_map is not None:
            result["dicom_results"] = self.store_dicom_results(source, anomaly_map, threshold)
        return label_file, result

    def store_dicom_results(self, series_folder: str, anomaly_map, threshold: float) -> dict[str, Any]:
        """Build the SEG (``map >= threshold``) and the overlay series of a scored series and store them in the PACS.

        A PACS that refuses them does not fail the request: the viewer still gets its result, and the JSON result
        says what went wrong (``"stored": false``, ``"error"``).

        Returns:
            ``{"stored", "study", "seg_series", "overlay_series", "instances"}`` (UIDs, number of instances sent),
            or ``{"stored": False, "error": ...}``.
        """
        from disyre_monai.dicom.results import dicom_results

        name = os.path.basename(series_folder)
        try:
            seg, overlay = dicom_results(series_folder, anomaly_map, anomaly_map >= threshold, threshold)
            self.result_store.store([seg, *overlay])
        except Exception as error:  # the PACS or the DICOM writing failed: report it, keep the viewer's answer
            logger.error(f"the DICOM results of {name} were not stored in the PACS: {type(error).__name__}: {error}")
            return {"stored": False, "error": f"{type(error).__name__}: {str(error)[:500]}"}
        logger.info(f"stored the DICOM results of {name}: SEG {seg.SeriesInstanceUID}, overlay "
                    f"{overlay[0].SeriesInstanceUID} ({len(overlay)} images)")
        return {"stored": True, "study": str(seg.StudyInstanceUID), "seg_series": str(seg.SeriesInstanceUID),
                "overlay_series": str(overlay[0].SeriesInstanceUID), "instances": 1 + len(overlay)}
