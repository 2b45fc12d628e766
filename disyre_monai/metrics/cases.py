"""Per-volume quantities: case-level anomaly scores, slice-level scores and per-volume metrics.

Shapes: ``anomaly_map``, ``region``, ``label`` are ``(H, W, D)`` arrays; slices are along the last axis.
"""

from __future__ import annotations

import numpy as np

from disyre_monai.geometry import voxel_spacing
from disyre_monai.metrics.streaming import ScoreHistogram
from disyre_monai.utils import as_numpy

#: names of the case/slice scores: mean, max and mean of the top-k voxels of the evaluated region.
SCORE_NAMES = ("mean", "max", "top_k_mean")


def voxel_volume_ml(image) -> float | None:
    """Volume of one voxel in ml from a MetaTensor's affine, None when it has none."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    return float(abs(np.linalg.det(as_numpy(affine)[:3, :3]))) / 1000.0


def voxel_spacing_mm(image) -> tuple[float, ...] | None:
    """Voxel spacing (mm, one per spatial axis) from a MetaTensor's affine, None when it has none."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    return tuple(float(v) for v in voxel_spacing(affine))


def central_box(shape: tuple[int, ...], box_mm, spacing) -> np.ndarray:
    """Bool mask of the central box of ``box_mm`` (mm per axis) in a volume of ``shape`` with voxel ``spacing``:
    the voxels torchio's ``CropOrPad`` keeps (size ``round(mm / spacing)``, centred, the extra voxel of an odd
    difference cut at the end); axes smaller than the box are kept whole."""
    keep = np.zeros(shape, bool)
    index = []
    for n, mm, step in zip(shape, box_mm, spacing):
        size = min(n, max(int(round(float(mm) / float(step))), 1))
        start = (n - size) // 2
        index.append(slice(start, start + size))
    keep[tuple(index)] = True
    return keep


def case_scores(scores: np.ndarray, top_k: int) -> dict[str, float]:
    """Case-level scores of the flat ``scores`` of one volume's evaluated voxels."""
    k = min(top_k, scores.size)
    top = np.partition(scores, scores.size - k)[scores.size - k:]
    return {"mean": float(scores.mean()), "max": float(scores.max()), "top_k_mean": float(top.mean())}


def slice_scores(anomaly_map: np.ndarray, region: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """Scores of every axial slice that holds evaluated voxels: ``{name: (S,) float array}`` per
    :data:`SCORE_NAMES`, slices in order."""
    depth = anomaly_map.shape[-1]
    keep = region.reshape(-1, depth).any(0)
    slices = np.ascontiguousarray(np.moveaxis(anomaly_map[..., keep], -1, 0)).reshape(int(keep.sum()), -1)
    inside = np.ascontiguousarray(np.moveaxis(region[..., keep], -1, 0)).reshape(slices.shape)
    counts = inside.sum(1)
    slices[~inside] = -np.inf
    k = min(top_k, slices.shape[1])
    top = np.partition(slices, slices.shape[1] - k, axis=1)[:, slices.shape[1] - k:]
    finite_top = np.isfinite(top)
    maxima = top.max(1)
    slices[~inside] = 0.0
    return {"mean": slices.sum(1) / counts, "max": maxima,
            "top_k_mean": np.where(finite_top, top, 0.0).sum(1) / finite_top.sum(1)}


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """Bool array of ``mask``'s shape, True inside the bounding box of its nonzero voxels (the released DISYRE
    evaluation crops every volume to it); all False for an empty mask."""
    box = np.zeros(mask.shape, bool)
    nonzero = np.argwhere(mask)
    if len(nonzero):
        box[tuple(slice(lo, hi + 1) for lo, hi in zip(nonzero.min(0), nonzero.max(0)))] = True
    return box


def slice_has_lesion(region: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``(S,)`` bool: which of the slices scored by :func:`slice_scores` hold lesion voxels."""
    depth = region.shape[-1]
    keep = region.reshape(-1, depth).any(0)
    return (label & region).reshape(-1, depth).any(0)[keep]


def volume_metrics(hist: ScoreHistogram) -> dict[str, float]:
    """Threshold-free metrics of one volume from its histogram (NaN where undefined: no lesion voxel, or no
    healthy voxel)."""
    curve = hist.curve()
    out = {"average_precision": float("nan"), "auroc": float("nan"), "best_dice": float("nan")}
    if curve.positives:
        out["average_precision"] = curve.average_precision()
        out["best_dice"] = curve.best_dice()[0]
        if curve.negatives:
            out["auroc"] = curve.auroc()
    return out


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool arrays (1.0 when both are empty)."""
    denom = int(prediction.sum()) + int(truth.sum())
    return 1.0 if denom == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / denom
