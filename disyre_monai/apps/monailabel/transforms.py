"""What the MONAI Label app returns for a case: case-level scores and the label map (or heatmap) to send back.

Pure MONAI/numpy code: usable and testable without MONAI Label installed.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from disyre_monai.metrics.cases import SCORE_NAMES, voxel_volume_ml
from disyre_monai.metrics.cases import case_scores as volume_case_scores
from disyre_monai.utils import check_int, check_number

#: what :class:`AnomalyOutputd` can send back.
OUTPUT_KINDS = ("label_map", "heatmap")


def case_scores(
    anomaly_map: torch.Tensor | np.ndarray,
    brain_mask: torch.Tensor | np.ndarray | None = None,
    threshold: float = 0.5,
    top_k: int = 100,
    voxel_volume_mm3: float = 1.0,
) -> dict[str, float | int]:
    """Case-level summary of a voxel-wise anomaly map.

    Args:
        anomaly_map: scores ``(*spatial)`` or ``(1, *spatial)``, >= 0.
        brain_mask: voxels to summarise (same shape; > 0 is brain); None: every voxel.
        threshold: voxels with ``score >= threshold`` are anomalous (the label map's rule).
        top_k: number of highest brain voxels averaged into ``top_k_mean`` (fewer if the brain is smaller).
        voxel_volume_mm3: volume of one voxel, for ``anomalous_volume_ml``.

    Returns:
        ``{"max", "mean", "top_k_mean", "top_k", "threshold", "anomalous_voxels", "anomalous_volume_ml",
        "brain_voxels"}``; the scores are 0 for an empty brain mask.

    Raises:
        ValueError: when the mask's shape differs from the map's, or an argument is out of range.
    """
    name = "case_scores"
    threshold = check_number(name, "threshold", threshold)
    top_k = check_int(name, "top_k", top_k, 1, 10**9)
    voxel_volume_mm3 = check_number(name, "voxel_volume_mm3", voxel_volume_mm3, 0.0)
    scores = torch.as_tensor(np.asarray(anomaly_map) if not torch.is_tensor(anomaly_map) else anomaly_map)
    scores = scores.detach().float().cpu().as_subclass(torch.Tensor)
    if brain_mask is None:
        values = scores.flatten()
    else:
        mask = torch.as_tensor(np.asarray(brain_mask) if not torch.is_tensor(brain_mask) else brain_mask)
        mask = mask.detach().cpu().as_subclass(torch.Tensor)
        if mask.numel() != scores.numel() or mask.squeeze().shape != scores.squeeze().shape:
            raise ValueError(
                f"{name}: brain_mask has shape {tuple(mask.shape)}, the anomaly map {tuple(scores.shape)}."
            )
        values = scores.reshape(mask.shape).flatten()[mask.flatten() > 0]
    n = int(values.numel())
    anomalous = int((values >= threshold).sum()) if n else 0
    summary = volume_case_scores(values.numpy(), top_k) if n else dict.fromkeys(SCORE_NAMES, 0.0)
    return {
        **summary,
        "top_k": min(top_k, n),
        "threshold": threshold,
        "anomalous_voxels": anomalous,
        "anomalous_volume_ml": anomalous * voxel_volume_mm3 / 1000.0,
        "brain_voxels": n,
    }


def wants_heatmap(result_dtype: Any) -> bool:
    """True when a request's ``result_dtype`` asks for floats (e.g. "float32"); None/"uint8": the label map.

    Raises:
        ValueError: for a dtype numpy does not know.
    """
    if result_dtype in (None, ""):
        return False
    try:
        kind = np.dtype(result_dtype).kind
    except TypeError:
        raise ValueError(
            f"result_dtype {result_dtype!r} is not a numpy dtype; use 'uint8' (label map) or 'float32' (heatmap)."
        ) from None
    return kind == "f"


class CaseScoresd(MapTransform):
    """Write :func:`case_scores` of ``keys`` (the anomaly map) into ``data[result_key]["scores"]``.

    Args:
        keys: the anomaly map ``(1, *spatial)`` (one key).
        mask_key: brain mask of the same shape (missing: every voxel counts).
        threshold: label-map threshold, also reported in the result.
        top_k: voxels averaged into ``top_k_mean``.
        result_key: dict that MONAI Label returns as the JSON result (created when missing).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str | None = "mask",
        threshold: float = 0.5,
        top_k: int = 100,
        result_key: str = "result",
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"CaseScoresd: keys must name one anomaly map, got {self.keys}.")
        owner = type(self).__name__
        self.mask_key, self.result_key = mask_key, result_key
        self.threshold = check_number(owner, "threshold", threshold)
        self.top_k = check_int(owner, "top_k", top_k, 1, 10**9)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        amap = d[self.keys[0]]
        mask = d.get(self.mask_key) if self.mask_key else None
        result = dict(d.get(self.result_key) or {})
        voxel_ml = voxel_volume_ml(amap)  # None for an array without an affine: 1 mm^3 is assumed
        result["scores"] = case_scores(amap, mask, self.threshold, self.top_k,
                                       1.0 if voxel_ml is None else 1000.0 * voxel_ml)
        d[self.result_key] = result
        return d


class AnomalyOutputd(MapTransform):
    """Turn the anomaly map into what the client receives: a uint8 label map or the float32 heatmap.

    ``"label_map"``: 1 where ``score >= threshold`` (anomaly), 0 elsewhere (background), as the bundle's
    ``AsDiscreted(threshold=...)``; ``"heatmap"``: the scores as float32. Metadata (affine) is kept.

    Args:
        keys: the anomaly map(s).
        threshold: label-map threshold.
        output: "label_map" or "heatmap".
    """

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, output: str = "label_map") -> None:
        super().__init__(keys)
        owner = type(self).__name__
        self.threshold = check_number(owner, "threshold", threshold)
        if output not in OUTPUT_KINDS:
            raise ValueError(f"{owner}: output must be one of {OUTPUT_KINDS}, got {output!r}.")
        self.output = output

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            amap = torch.as_tensor(d[key]) if not torch.is_tensor(d[key]) else d[key]
            d[key] = (amap >= self.threshold).to(torch.uint8) if self.output == "label_map" else amap.float()
        return d
