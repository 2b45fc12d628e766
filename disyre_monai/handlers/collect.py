"""Feeding an ignite evaluator's cases into an :class:`~disyre_monai.metrics.evaluation.AnomalyEvaluation`.

The model's map comes from the decollated ``engine.state.output``; the image, brain mask and lesion label
from the decollated ``engine.state.batch`` (MONAI keeps keys that the postprocessing does not produce
there). Baselines are computed from the image by inferers called as ``inferer(image[None], None,
mask=mask[None])``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.inferers import Inferer

from disyre_monai.engines.distributed import SHARDED_EVALUATION, sharded_cases
from disyre_monai.metrics.cases import voxel_spacing_mm, voxel_volume_ml
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.metrics.protocols import Protocol, look_up_protocol
from disyre_monai.utils import as_numpy, source_name


class CaseCollector(ABC):
    """Base of the evaluator handlers: collects cases (model map + baselines) into an evaluation.

    Args:
        protocol: evaluation protocol (name or :class:`Protocol`).
        baselines: name -> inferer computing a baseline map from the image (``{}`` for none; None values are
            left out, e.g. a normative model with no healthy training split).
        model_name: the model's name in the results.
        pred_key, label_key, mask_key, image_key: keys of the decollated evaluator output/batch.
        healthy_key: batch key whose value ``"healthy"`` marks a lesion-free case with no label
            (the ``role`` written by :mod:`disyre_monai.data.adapters`).
        failures: a :class:`~disyre_monai.failures.FailureReport`: a case that cannot be scored (no label,
            shapes that differ, NaN in a map) is recorded there with stage ``"evaluation"`` and left out,
            and the run goes on. None: the error stops the run.
    """

    def __init__(self, protocol: str | Protocol = "exact", baselines: Mapping[str, Inferer] | None = None,
                 model_name: str = "disyre", pred_key: str = "pred", label_key: str = "label",
                 mask_key: str = "mask", image_key: str = "image", healthy_key: str = "role", failures=None) -> None:
        self.protocol = look_up_protocol(protocol)
        self.baselines = {name: b for name, b in (baselines or {}).items() if b is not None}  # None: left out
        self.model_name = model_name
        self.methods = [model_name, *self.baselines]
        self.keys = (pred_key, label_key, mask_key, image_key, healthy_key)
        self.failures = failures
        self.evaluation: AnomalyEvaluation | None = None  # created when the engine starts (or at the first case)

    def _new_evaluation(self) -> AnomalyEvaluation:
        return AnomalyEvaluation(self.protocol, self.methods)

    def attach(self, engine: Engine) -> None:
        """Attach to ``engine``.

        Raises:
            RuntimeError: when the engine's cases are one rank's share (``multi_gpu_inference.json`` on top of
                ``evaluate.json``): the metrics need every case.
        """
        shard = sharded_cases(getattr(engine, "data_loader", None))
        if shard is not None:
            raise RuntimeError(f"{type(self).__name__} on process {shard.rank} of {shard.world_size}: "
                               f"{SHARDED_EVALUATION}")
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine | None = None) -> None:
        self.evaluation = self._new_evaluation()

    def add_case(self, name: str, pred, label, mask, image, healthy: bool = False) -> list[dict]:
        """Add one case: ``pred``, ``label``, ``mask`` ``(1, *spatial)``; ``image`` ``(C, *spatial)``."""
        if self.evaluation is None:
            self.evaluation = self._new_evaluation()
        maps = {self.model_name: as_numpy(pred)}
        image_t, mask_t = torch.as_tensor(as_numpy(image))[None], torch.as_tensor(as_numpy(mask))[None]
        for method, inferer in self.baselines.items():
            maps[method] = as_numpy(inferer(image_t, None, mask=mask_t))[0]
        return self.evaluation.add_case(name, maps, mask, label, image=as_numpy(image)[0],
                                        voxel_volume_ml=voxel_volume_ml(image), healthy=healthy,
                                        spacing=voxel_spacing_mm(image))

    def _collect(self, engine: Engine) -> None:
        pred_key, label_key, mask_key, image_key, healthy_key = self.keys
        for out, item in zip(engine.state.output, engine.state.batch):  # both decollated by MONAI
            name = Path(source_name(item[image_key], "case")).name
            healthy = item.get(healthy_key) == "healthy"
            try:
                if label_key not in item and not healthy:
                    raise KeyError(f"{type(self).__name__}: case {name} has no {label_key!r} (lesion mask) to "
                                   f"evaluate against; give one, or mark the case {healthy_key}='healthy'.")
                self.add_case(name, out[pred_key], item.get(label_key), item[mask_key], item[image_key], healthy)
            except Exception as error:
                if self.failures is None:
                    raise
                self.failures.record(source_name(item[image_key], name), "evaluation", error)

    @abstractmethod
    def _completed(self, engine: Engine) -> None:
        """What the handler does with the evaluation once every case is in."""
