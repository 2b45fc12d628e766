"""Checkpoints that are never torn (temporary file, then rename) and a resume that skips corrupt ones.

A periodic checkpoint holds everything a resumed run needs to continue as if never stopped: model,
optimiser, LR scheduler, the engine's iteration, the AMP gradient scaler and the global RNG states (Python,
numpy, torch CPU and CUDA, as tensors so that ``weights_only`` loading accepts them). The training data stream
(:class:`~disyre_monai.data.ResumableSampleStream`) needs no state: its batches follow from the iteration.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from disyre_monai.handlers.rng import capture_rng_state, restore_rng_state
from disyre_monai.io import atomic_torch_save, remove_stale_temporaries, safe_torch_load, verify_torch_file

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d+)\.pt$")
logger = logging.getLogger(__name__)


def list_checkpoints(save_dir: str | os.PathLike) -> list[Path]:
    """Every ``checkpoint_<iteration>.pt`` in ``save_dir``, newest (highest iteration) first."""
    folder = Path(save_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def latest_checkpoint(save_dir: str | os.PathLike, verify: bool = True) -> str | None:
    """Path of the newest complete ``checkpoint_<iteration>.pt`` in ``save_dir``, or None if there is none.

    With ``verify``, a file that is truncated or fails its CRC check is skipped with a warning naming it, and
    the previous checkpoint is returned.
    """
    for path in list_checkpoints(save_dir):
        if not verify:
            return str(path)
        try:
            verify_torch_file(path)
        except ValueError as e:
            logger.warning(f"skipping {e}")
            continue
        return str(path)
    return None


class AtomicCheckpointSaver:
    """Save resumable checkpoints every ``save_interval`` iterations, and the final model, atomically.

    Periodic files are ``checkpoint_<iteration>.pt`` holding ``{name: obj.state_dict()}`` for every entry of
    ``save_dict`` plus the engine's own state under ``"trainer"`` (the newest ``n_saved`` are kept). At the
    end, ``final_filename`` holds the state dict of ``save_dict[final_key]`` alone (the model file the
    inference config loads). With ``key_metric_filename`` the handler instead follows an evaluator: whenever
    its key metric improves, it saves ``save_dict[final_key]`` there.

    Args:
        save_dir: output folder.
        save_dict: objects with ``state_dict()`` (model, optimizer, lr scheduler).
        save_interval: iterations between periodic checkpoints (0: none).
        n_saved: periodic checkpoints kept.
        final_filename: model file written at the end (None: none).
        final_key: the ``save_dict`` entry saved as the model.
        key_metric_filename: best-model file, for use on an evaluator.
        key_metric_mode: "max" (a higher key metric is better, e.g. PSNR) or "min" (e.g. the released diffusion
            baselines' validation L1 loss).
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict[str, Any],
        save_interval: int = 0,
        n_saved: int = 2,
        final_filename: str | None = "model.pt",
        final_key: str = "model",
        key_metric_filename: str | None = None,
        key_metric_mode: str = "max",
    ) -> None:
        if final_key not in save_dict:
            raise ValueError(f"AtomicCheckpointSaver: final_key {final_key!r} is not in save_dict {list(save_dict)}.")
        self.save_dir = Path(save_dir)
        self.save_dict, self.final_key = save_dict, final_key
        self.save_interval, self.n_saved = int(save_interval), max(int(n_saved), 1)
        self.final_filename, self.key_metric_filename = final_filename, key_metric_filename
        if key_metric_mode not in ("max", "min"):
            raise ValueError(f"AtomicCheckpointSaver: key_metric_mode must be 'max' or 'min', got {key_metric_mode!r}.")
        self.key_metric_mode = key_metric_mode
        self._best: float | None = None

    def attach(self, engine: Engine) -> None:
        if self.key_metric_filename:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._save_if_best)
            return
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._save_periodic)
        if self.final_filename:
            engine.add_event_handler(Events.COMPLETED, self._save_final)

    def _model_state(self) -> dict:
        model = self.save_dict[self.final_key]
        return getattr(model, "module", model).state_dict()  # unwrap DistributedDataParallel

    def _save_periodic(self, engine: Engine) -> None:
        state = {k: v.state_dict() for k, v in self.save_dict.items() if k != self.final_key}
        state[self.final_key] = self._model_state()
        state["trainer"] = engine.state_dict()
        state["rng"] = capture_rng_state()
        scaler = getattr(engine, "scaler", None)
        if scaler is not None and hasattr(scaler, "state_dict"):
            state["grad_scaler"] = scaler.state_dict()
        path = self.save_dir / f"checkpoint_{engine.state.iteration:08d}.pt"
        atomic_torch_save(state, path)
        older = sorted(p for p in self.save_dir.iterdir() if CHECKPOINT_PATTERN.match(p.name))[: -self.n_saved]
        for p in older:
            p.unlink(missing_ok=True)
        logger.info(f"saved checkpoint {path}")

    def _save_final(self, engine: Engine) -> None:
        atomic_torch_save(self._model_state(), self.save_dir / self.final_filename)
        logger.info(f"saved final model {self.save_dir / self.final_filename}")

    def _save_if_best(self, engine: Engine) -> None:
        value = float(engine.state.metrics[engine.state.key_metric_name])
        if self._best is None or (value > self._best if self.key_metric_mode == "max" else value < self._best):
            self._best = value
            atomic_torch_save(self._model_state(), self.save_dir / self.key_metric_filename)
            logger.info(f"saved best model ({engine.state.key_metric_name}={value:.4f}) {self.key_metric_filename}")


class CheckpointResumer:
    """Resume training from the newest complete checkpoint of ``save_dir``, when there is one.

    On attach (before the run starts) it loads the model, optimiser and LR-scheduler states of ``load_dict``
    and the engine's iteration, so the run continues where the checkpoint left off, mid-epoch included; when
    the run starts it restores the RNG states and the AMP gradient scaler saved with it. Temporary files of a
    save that was killed are deleted first. Loading uses
    ``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain values only. A newest checkpoint
    that is truncated or corrupt is renamed ``<name>.corrupt`` with a warning and the previous one is used.

    Args:
        save_dir: folder of ``checkpoint_<iteration>.pt`` files (see :class:`AtomicCheckpointSaver`).
        load_dict: name -> object with ``load_state_dict`` (the same names as when saving).
        enabled: False turns the handler off (e.g. a config's ``resume`` flag).
        map_location: device for the loaded tensors.

    Raises:
        ValueError: when the chosen checkpoint lacks an entry of ``load_dict`` or its model weights do not fit
            the network (naming the file, the parameter and both shapes).
    """

    def __init__(self, save_dir: str, load_dict: dict[str, Any], enabled: bool = True, map_location=None) -> None:
        self.save_dir, self.load_dict = save_dir, load_dict
        self.enabled, self.map_location = bool(enabled), map_location
        self.loaded_path: str | None = None
        self._pending: dict[str, Any] = {}

    def _load_newest(self) -> tuple[Path, dict] | None:
        for path in list_checkpoints(self.save_dir):
            try:
                checkpoint = safe_torch_load(path, map_location=self.map_location)
            except ValueError as e:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                logger.warning(f"resume: {e} Moved aside to {aside.name}; trying the previous checkpoint.")
                continue
            return path, checkpoint
        return None

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        stale = remove_stale_temporaries(self.save_dir)
        if stale:
            logger.info(f"resume: removed {len(stale)} temporary file(s) of an interrupted save in {self.save_dir}")
        found = self._load_newest()
        if found is None:
            logger.info(f"resume: no checkpoint in {self.save_dir}, starting from scratch")
            return
        path, checkpoint = found
        if not isinstance(checkpoint, dict):
            raise ValueError(f"CheckpointResumer: {path} holds a {type(checkpoint).__name__}, not a checkpoint dict.")
        missing = [k for k in [*self.load_dict, "trainer"] if k not in checkpoint]
        if missing:
            raise ValueError(f"CheckpointResumer: {path} lacks {missing} (has {sorted(checkpoint)}).")
        import torch

        from disyre_monai.networks.loading import check_state_dict

        for name, obj in self.load_dict.items():
            target = getattr(obj, "module", obj)
            if isinstance(target, torch.nn.Module):
                check_state_dict(target, checkpoint[name], f"checkpoint {path} [{name}]")
            target.load_state_dict(checkpoint[name])
        configured_epochs = engine.state.max_epochs
        engine.load_state_dict(checkpoint["trainer"])
        if configured_epochs is not None:  # the configured length wins, so a finished run can be extended
            if engine.state.epoch > configured_epochs:
                raise ValueError(f"CheckpointResumer: {path} is at epoch {engine.state.epoch}, beyond max_epochs="
                                 f"{configured_epochs}; raise max_epochs to continue from it.")
            engine.state.max_epochs = configured_epochs
        self._pending = {k: checkpoint[k] for k in ("rng", "grad_scaler") if k in checkpoint}
        if "rng" not in checkpoint:
            logger.warning(f"resume: {path} holds no RNG states (older format); random draws will differ")
        engine.add_event_handler(Events.STARTED, self._restore_run_state)
        self.loaded_path = str(path)
        logger.info(f"resume: continuing from {path} (iteration {engine.state.iteration})")

    def _restore_run_state(self, engine: Engine) -> None:
        if "rng" in self._pending:
            restore_rng_state(self._pending["rng"])
        scaler = getattr(engine, "scaler", None)
        if "grad_scaler" in self._pending and scaler is not None and self._pending["grad_scaler"]:
            scaler.load_state_dict(self._pending["grad_scaler"])
        self._pending = {}
