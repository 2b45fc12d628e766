"""Site calibration: the anomaly-mask threshold set on a site's own healthy scans, kept next to the weights.

A threshold chosen on the demo brains means little on another scanner: the maps of healthy brains there are
brighter or darker. ``disyre-monai calibrate HEALTHY_DIR --fpr 0.01`` scores the site's healthy scans with the
bundle's own inference and keeps the lowest threshold whose false-positive rate on their pooled brain voxels is
at most ``fpr``. The result is a card, ``calibration.json`` next to the weights, saying how it was obtained
(scans, voxels, requested and achieved rate, the weights' checksum); inference and MONAI Label read it, and a run
without one says so in its ``threshold.json``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from disyre_monai.io import atomic_write_json
from disyre_monai.metrics.curve import curve_from_scores
from disyre_monai.utils import check_number

logger = logging.getLogger(__name__)

CARD_NAME = "calibration.json"
UNCALIBRATED_NOTE = ("no site calibration for these weights: the threshold is the bundle's default, set on the demo "
                     "brains; run 'disyre-monai calibrate HEALTHY_DIR --fpr 0.01' on this site's healthy scans")


def threshold_at_fpr(scores: Sequence[np.ndarray], fpr: float) -> tuple[float, float, int]:
    """The lowest threshold whose false-positive rate on the pooled healthy ``scores`` is at most ``fpr``.

    Args:
        scores: one flat array of brain-voxel scores per healthy scan.
        fpr: the false-positive rate allowed, in [0, 1).

    Returns:
        ``(threshold, achieved_fpr, voxels)``: the fraction of the pooled voxels with ``score >= threshold`` is
        ``achieved_fpr <= fpr`` (lower when ties straddle the rate); just above the maximum when even that exceeds
        ``fpr`` (``fpr`` 0).
    """
    fpr = check_number("threshold_at_fpr", "fpr", fpr, 0.0, 1.0)
    pooled = np.concatenate([np.asarray(s, dtype=np.float64).ravel() for s in scores]) if len(scores) else np.zeros(0)
    if pooled.size == 0:
        raise ValueError("threshold_at_fpr: no healthy brain voxel to calibrate on.")
    curve = curve_from_scores(pooled, np.zeros(pooled.size, dtype=bool))
    threshold = curve.threshold_at_fpr(fpr)
    return threshold, float(np.count_nonzero(pooled >= threshold) / pooled.size), int(pooled.size)


def card_path(model_path: str | os.PathLike, calibration_file: str | os.PathLike | None = None) -> Path:
    """``calibration_file``, or ``calibration.json`` in the folder of ``model_path``."""
    return Path(calibration_file) if calibration_file else Path(model_path).parent / CARD_NAME


#: resolved path -> (size, mtime_ns, SHA-256) of the weights checked last: the MONAI Label app checks its card at
#: every request, and a 100 MB model need not be read again while it is unchanged
_CHECKSUMS: dict[str, tuple[int, int, str]] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (the weights a calibration belongs to), read again only when the file changed."""
    key, stat = str(Path(path).resolve()), os.stat(path)
    known = _CHECKSUMS.get(key)
    if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
        return known[2]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    _CHECKSUMS[key] = (stat.st_size, stat.st_mtime_ns, digest.hexdigest())
    return digest.hexdigest()


def read_calibration(model_path: str | os.PathLike, calibration_file: str | os.PathLike | None = None
                     ) -> dict[str, Any] | None:
    """The calibration card of the weights at ``model_path`` (see :func:`card_path`), or None when there is none.

    Raises:
        ValueError: naming the file, when it is not a calibration card (no number under ``"threshold"``), or when it
            was made for other weights (its ``model_sha256`` differs from the file's).
    """
    path = card_path(model_path, calibration_file)
    if not path.is_file():
        if calibration_file:
            raise FileNotFoundError(f"calibration file {path} does not exist.")
        return None
    try:
        card = json.loads(path.read_text())
        threshold = float(card["threshold"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"calibration file {path}: not a calibration card ({type(error).__name__}: {error}); "
                         f"make it again with 'disyre-monai calibrate'.") from error
    if not np.isfinite(threshold):
        raise ValueError(f"calibration file {path}: the threshold {threshold} is not finite.")
    expected = card.get("model_sha256")
    if expected and Path(model_path).is_file() and file_sha256(model_path) != expected:
        raise ValueError(f"calibration file {path} was made for other weights than {model_path} (checksums differ): "
                         f"calibrate these weights again.")
    return card


def threshold_record(model_path: str | os.PathLike, default_threshold: float,
                     calibration_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """The threshold an inference run uses and where it comes from.

    Returns:
        ``{"threshold", "calibrated": True, "calibration": card, "calibration_file"}`` when the weights have a card,
        else ``{"threshold": default_threshold, "calibrated": False, "note": ...}``.
    """
    card = read_calibration(model_path, calibration_file)
    if card is None:
        return {"threshold": float(default_threshold), "calibrated": False, "note": UNCALIBRATED_NOTE}
    return {"threshold": float(card["threshold"]), "calibrated": True, "calibration": card,
            "calibration_file": str(card_path(model_path, calibration_file))}


def write_threshold_record(record: dict[str, Any], output_dir: str | os.PathLike,
                           threshold: float | None = None) -> Path:
    """Write the threshold a run uses as ``<output_dir>/threshold.json`` (atomically); warn when it is not a site
    calibration.

    Args:
        record: :func:`threshold_record`.
        output_dir: the run's output folder.
        threshold: the threshold the run really uses (``--threshold`` may replace the record's): when it differs,
            the file says it was given by hand.
    """
    if threshold is not None and float(threshold) != record["threshold"]:
        source = "site calibration" if record["calibrated"] else "default"
        record = {"threshold": float(threshold), "calibrated": False,
                  "note": f"given by hand (--threshold); the {source} would be {record['threshold']:g}"}
    if not record.get("calibrated"):
        logger.warning(f"threshold {record['threshold']:g}: {record.get('note', UNCALIBRATED_NOTE)}")
    path = Path(output_dir) / "threshold.json"
    atomic_write_json(path, record)
    return path


def write_calibration(model_path: str | os.PathLike, threshold: float, fpr: float, achieved_fpr: float,
                      voxels: int, cases: Sequence[str], output: str | os.PathLike | None = None,
                      **extra: Any) -> Path:
    """Write the calibration card (atomically) next to the weights, or to ``output``.

    Args:
        model_path: the weights the threshold belongs to (their SHA-256 goes into the card).
        threshold, fpr, achieved_fpr, voxels: as :func:`threshold_at_fpr` (``fpr`` requested).
        cases: the names of the healthy scans used.
        output: the card's path (default: ``calibration.json`` next to the weights).
        extra: more entries for the card (e.g. the protocol, the data folder).
    """
    path = card_path(model_path, output)
    card = {"threshold": float(threshold), "fpr": float(fpr), "achieved_fpr": float(achieved_fpr),
            "voxels": int(voxels), "scans": len(cases), "scan_names": list(cases),
            "model_path": str(model_path),
            "model_sha256": file_sha256(model_path) if Path(model_path).is_file() else None,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "how": "the lowest threshold whose false-positive rate on the pooled brain voxels of these healthy scans "
                   "is at most fpr (disyre-monai calibrate)", **extra}
    atomic_write_json(path, card)
    return path
