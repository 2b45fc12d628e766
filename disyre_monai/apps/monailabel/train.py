"""MONAI Label training task: fine-tune DISYRE on the datastore's scans, without a single label."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from disyre_monai.apps.monailabel._compat import require_monailabel
from disyre_monai.apps.monailabel.datastore import image_ids, selected_images
from disyre_monai.apps.monailabel.weights import weights_path
from disyre_monai.io import atomic_write, atomic_write_json
from disyre_monai.utils import check_int, check_number

require_monailabel()

from monailabel.interfaces.datastore import Datastore  # noqa: E402
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException  # noqa: E402
from monailabel.interfaces.tasks.train import TrainTask  # noqa: E402
from monailabel.utils.others.generic import device_list, name_to_device  # noqa: E402

logger = logging.getLogger(__name__)

RUNS_DIR = "train_runs"
LATEST_STATS = "latest.json"


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"train request: {name} must be true or false, got {value!r}.")


def split_images(entries: list[dict], val_split: float) -> tuple[list[dict], list[dict]]:
    """Split images into training and validation lists: the last ``round(n * val_split)`` validate.

    When that rounds to none (few images, or ``val_split == 0``), every image trains and the validation list
    repeats them: the bundle's validation (restoration PSNR on synthetic anomalies) then monitors the fit.
    """
    n_val = min(int(round(len(entries) * val_split)), len(entries) - 1)
    if n_val <= 0:
        return list(entries), list(entries)
    return entries[:-n_val], entries[-n_val:]


def publish_model(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a trained ``model.pt`` over the served one atomically (the server reloads it on the next request)."""
    with open(source, "rb") as f:
        return atomic_write(destination, lambda out: shutil.copyfileobj(f, out))


def retire_calibration(model_path: str | os.PathLike, run_dir: str | os.PathLike) -> Path | None:
    """Move the calibration card of the weights just replaced into the run folder (it no longer applies), so the
    label maps fall back to the default threshold and say so until the new weights are calibrated.

    Returns:
        the card's new path, or None when the weights had none.
    """
    from disyre_monai.metrics.site_calibration import card_path

    card = card_path(model_path)
    if not card.is_file():
        return None
    retired = Path(run_dir) / "calibration_of_previous_weights.json"
    os.replace(card, retired)
    logger.warning(f"the site calibration {card} belonged to the previous weights: moved to {retired}; calibrate the "
                   f"new weights with 'disyre-monai calibrate HEALTHY_DIR --model_path {model_path}'")
    return retired


class DisyreTrainTask(TrainTask):
    """Train the DISYRE bundle on the datastore's images, labels or not (DISYRE needs none).

    Each run builds a datalist from the datastore's images (optionally only those tagged healthy, see
    :func:`~disyre_monai.apps.monailabel.datastore.is_healthy`, or only the ``images`` named), runs the bundle's
    ``configs/train.json`` workflow (``monai.bundle.ConfigWorkflow``; with ``preset`` "finetune" also
    ``configs/finetune.json``: its steps, learning rate and warm-up) in ``<bundle>/train_runs/run_<time>/``,
    starting from the served weights ``models/model.pt`` (``pretrained``; otherwise from scratch), and finally
    replaces ``models/model.pt`` atomically with the run's final model, or, with ``weights_name`` NAME, keeps it
    as ``models/patients/NAME/model.pt`` and leaves the served weights alone (a patient's own weights, from their
    earlier study: inference requests name them with the same ``weights_name``). Periodic checkpoints of a
    finished run are deleted; its ``models/model.pt``, TensorBoard logs, ``datalist.json`` and
    ``train_stats.json`` are kept, so every fine-tuned version stays available.

    Request options (shown in the clients' training options): ``device``, ``pretrained``, ``healthy_only``,
    ``images`` (comma-separated image ids; empty: every image, or every healthy one), ``preset`` ("train" or
    "finetune"), ``weights_name`` (empty: replace the served weights), ``max_epochs``, ``epoch_length``
    (iterations per epoch), ``learning_rate``, ``val_split``, ``num_workers``; defaults from the bundle's train
    config, or from finetune.json for the options a "finetune" request leaves at the defaults shown.

    Args:
        path: the bundle folder (``configs/train.json``, ``configs/metadata.json``, ``models/model.pt``).
        conf: the app's ``--conf`` settings (unused; kept for MONAI Label's task signature).
    """

    def __init__(self, path: str, conf: dict[str, str] | None = None) -> None:
        self.bundle_path = str(path)
        self.train_config = os.path.join(self.bundle_path, "configs", "train.json")
        if not os.path.isfile(self.train_config):
            raise FileNotFoundError(f"DisyreTrainTask: bundle {path} has no configs/train.json.")
        from monai.bundle import ConfigParser

        self.parser = ConfigParser()
        self.parser.read_config(self.train_config)
        self.finetune_config = os.path.join(self.bundle_path, "configs", "finetune.json")
        with open(os.path.join(self.bundle_path, "configs", "metadata.json"), encoding="utf-8") as f:
            metadata = json.load(f)
        super().__init__("Fine-tune DISYRE on the datastore's scans without labels (restoring synthetic anomalies)")
        self.version = metadata.get("version")
        self.conf = conf or {}

    def config(self) -> dict[str, Any]:
        return {
            "device": device_list(),
            "pretrained": True,
            "healthy_only": False,
            "images": "",
            "preset": "train",
            "weights_name": "",
            "max_epochs": int(self.parser.get("max_epochs")),
            "epoch_length": int(self.parser.get("epoch_length")),
            "learning_rate": float(self.parser.get("learning_rate")),
            "val_split": 0.2,
            "num_workers": int(self.parser.get_parsed_content("num_workers")),
        }

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version}

    def stats(self) -> dict[str, Any]:
        """The last finished run's ``train_stats.json`` (empty before the first run)."""
        latest = Path(self.bundle_path, RUNS_DIR, LATEST_STATS)
        try:
            return json.loads(latest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def preset_defaults(self, preset: str) -> dict[str, Any]:
        """The schedule of a preset: train.json's, or finetune.json's on top of it."""
        if preset not in ("train", "finetune"):
            raise ValueError(f"train request: preset must be 'train' or 'finetune', got {preset!r}.")
        if preset == "train":
            return {k: self.config()[k] for k in ("max_epochs", "epoch_length", "learning_rate")}
        if not os.path.isfile(self.finetune_config):
            raise ValueError(f"train request: preset 'finetune' needs {self.finetune_config}, which is missing.")
        with open(self.finetune_config, encoding="utf-8") as f:
            preset_config = json.load(f)
        return {k: preset_config.get(k, self.config()[k]) for k in ("max_epochs", "epoch_length", "learning_rate")}

    def _options(self, request: dict[str, Any]) -> dict[str, Any]:
        defaults = self.config()
        value = {k: request.get(k, v) for k, v in defaults.items()}
        try:
            preset = str(value["preset"] or "train")
            for key, preset_value in self.preset_defaults(preset).items():
                if value[key] == defaults[key]:  # left at the default shown: the preset's
                    value[key] = preset_value
            weights_name = str(value["weights_name"] or "")
            if weights_name:
                weights_path(self.bundle_path, weights_name, must_exist=False)  # a plain name
            images = image_ids(value["images"])
            return {
                "device": name_to_device(value["device"]),
                "pretrained": _flag("pretrained", value["pretrained"]),
                "healthy_only": _flag("healthy_only", value["healthy_only"]),
                "images": images,
                "preset": preset,
                "weights_name": weights_name,
                "max_epochs": check_int("train request", "max_epochs", value["max_epochs"], 1, 10**6),
                "epoch_length": check_int("train request", "epoch_length", value["epoch_length"], 1, 10**9),
                "learning_rate": check_number("train request", "learning_rate", value["learning_rate"], 0.0, 1.0),
                "val_split": check_number("train request", "val_split", value["val_split"], 0.0, 0.9),
                "num_workers": check_int("train request", "num_workers", value["num_workers"], 0, 256),
            }
        except ValueError as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(error)) from None

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        from monai.bundle import ConfigWorkflow

        options = self._options(request)
        try:  # the named images only (a patient's earlier study), tagged healthy or not
            images = selected_images(datastore, options["images"], healthy_only=options["healthy_only"])
        except ValueError as error:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, str(error)) from None
        if not images:
            which = "tagged healthy (image info {\"healthy\": true})" if options["healthy_only"] else "in the datastore"
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"no image {which} to train on.")
        train, validation = split_images(images, options["val_split"])
        model_path = os.path.join(self.bundle_path, "models", "model.pt")
        destination = weights_path(self.bundle_path, options["weights_name"], must_exist=False)
        if options["pretrained"] and not os.path.isfile(model_path):
            raise MONAILabelException(MONAILabelError.APP_TRAIN_FAILED, f"no weights to start from: {model_path}.")

        run_dir = Path(self.bundle_path, RUNS_DIR, datetime.now().strftime("run_%Y%m%d_%H%M%S_%f"))
        datalist = atomic_write_json(run_dir / "datalist.json", {
            "training": [{"image": e["image"]} for e in train],
            "validation": [{"image": e["image"]} for e in validation],
        })
        logger.info(f"training on {len(train)} image(s), validating on {len(validation)}; run folder {run_dir}")
        overrides = {
            "bundle_root": self.bundle_path,
            "output_dir": str(run_dir),
            "dataset_dir": None,
            "datalist": str(datalist),
            "device": options["device"],
            "max_epochs": options["max_epochs"],
            "epoch_length": options["epoch_length"],
            "learning_rate": options["learning_rate"],
            "num_workers": options["num_workers"],
            "progress": False,
            "resume": False,
            "init_weights": model_path if options["pretrained"] else None,
        }
        configs = [self.train_config] + ([self.finetune_config] if options["preset"] == "finetune" else [])
        start = time.time()
        workflow = ConfigWorkflow(config_file=configs, workflow_type="train", logging_file=False, **overrides)
        workflow.initialize()
        workflow.run()
        trainer = workflow.parser.get_parsed_content("train#trainer")
        evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        workflow.finalize()

        trained = run_dir / "models" / "model.pt"
        if not trained.is_file():
            raise MONAILabelException(MONAILabelError.APP_TRAIN_FAILED, f"training wrote no final model {trained}.")
        publish_model(trained, destination)
        retired = retire_calibration(destination, run_dir)
        for checkpoint in (run_dir / "models").glob("checkpoint_*.pt"):
            checkpoint.unlink()
        best = getattr(evaluator.state, "best_metric", -1)
        stats = {
            "run_dir": str(run_dir),
            "finished": datetime.now().isoformat(timespec="seconds"),
            "duration_s": round(time.time() - start, 1),
            "images": [e["id"] for e in train],
            "validation_images": [e["id"] for e in validation],
            "healthy_only": options["healthy_only"],
            "pretrained": options["pretrained"],
            "preset": options["preset"],
            "weights_name": options["weights_name"] or None,
            "epochs": int(trainer.state.epoch),
            "iterations": int(trainer.state.iteration),
            "best_val_psnr": None if best is None or best == -1 else float(best),
            "published_model": destination,
            "calibration": ("the site calibration of the previous weights was moved to " + str(retired)
                            + ": calibrate the new weights (disyre-monai calibrate)") if retired else None,
        }
        atomic_write_json(run_dir / "train_stats.json", stats)
        atomic_write_json(Path(self.bundle_path, RUNS_DIR, LATEST_STATS), stats)
        logger.info(f"training finished: {stats}")
        return stats
