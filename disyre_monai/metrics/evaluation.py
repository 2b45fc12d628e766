"""Streaming evaluation of anomaly maps under a named protocol, in memory bounded by one volume at a time.

:class:`AnomalyEvaluation` takes one case at a time (maps of several methods, brain mask, lesion label) and
keeps only histograms, per-case rows, slice scores and a few snapshots for figures. ``result()`` returns
every number labelled with the protocol; :class:`~disyre_monai.handlers.AnomalyReport` writes them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from disyre_monai.metrics.cases import (
    SCORE_NAMES,
    bounding_box,
    case_scores,
    central_box,
    dice,
    slice_has_lesion,
    slice_scores,
    volume_metrics,
)
from disyre_monai.metrics.curve import RankCurve, curve_from_scores
from disyre_monai.metrics.postprocess import erode_mask, median_filter_map, remove_small_components
from disyre_monai.metrics.protocols import Protocol, look_up_protocol
from disyre_monai.metrics.streaming import ScoreHistogram
from disyre_monai.utils import as_numpy

#: upper edges (ml) of the lesion-volume bins of the size breakdown; the last bin is open.
LESION_SIZE_BINS_ML = (1.0, 10.0, 50.0)


def _volume(x, name: str, what: str) -> np.ndarray:
    """``x`` as a 3D array (a leading channel of 1 is dropped)."""
    x = as_numpy(x)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"AnomalyEvaluation: case {name}: {what} must be 3D (H, W, D), got shape {x.shape}.")
    return x


def _mean_std(values: list[float]) -> dict[str, float | int | None]:
    values = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if values.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}


def _size_bin(ml: float) -> str:
    edges = (0.0, *LESION_SIZE_BINS_ML)
    for low, high in zip(edges, edges[1:]):
        if ml < high:
            return f"{low:g}-{high:g} ml"
    return f">={edges[-1]:g} ml"


class AnomalyEvaluation:
    """Accumulates cases and computes protocol-labelled metrics for a model's maps and its baselines.

    Args:
        protocol: a preset name (see :data:`~disyre_monai.metrics.protocols.PROTOCOLS`) or a ``Protocol``.
        methods: names of the maps given to :meth:`add_case`, the model first.
        thresholds: method -> binarisation threshold (thresholded Dice is reported only for these).
        threshold_source: how the thresholds were chosen (written next to them).
        seed: seed of the protocol's voxel subsampling (case ``i`` draws from ``default_rng([seed, i])``).
        mantissa_bits: resolution of the streaming histograms (see :class:`ScoreHistogram`).
        num_snapshots: best and worst cases kept (one axial slice each) for the montage figures.
    """

    def __init__(
        self,
        protocol: str | Protocol = "exact",
        methods: tuple[str, ...] | list[str] = ("disyre",),
        thresholds: Mapping[str, float] | None = None,
        threshold_source: str = "",
        seed: int = 0,
        mantissa_bits: int = 15,
        num_snapshots: int = 3,
    ) -> None:
        self.protocol = look_up_protocol(protocol)
        self.methods = list(methods)
        if not self.methods:
            raise ValueError("AnomalyEvaluation: methods must name at least one map.")
        self.thresholds = {m: float(t) for m, t in (thresholds or {}).items() if t is not None}
        unknown = set(self.thresholds) - set(self.methods)
        if unknown:
            raise ValueError(f"AnomalyEvaluation: thresholds for unknown methods {sorted(unknown)}.")
        self.threshold_source = threshold_source
        self.seed, self.mantissa_bits, self.num_snapshots = int(seed), int(mantissa_bits), int(num_snapshots)
        self.reset()

    def reset(self) -> None:
        self.cases: list[dict] = []  # one row per (case, method)
        self.case_names: list[str] = []
        self.histograms = {m: ScoreHistogram(self.mantissa_bits) for m in self.methods}
        self.confusion = {m: np.zeros(3, np.int64) for m in self.methods}  # thresholded TP, FP, FN, pooled
        self.volume_scores = {m: {s: [] for s in SCORE_NAMES} for m in self.methods}
        self.volume_labels: list[bool] = []
        self.slice_scores = {m: {s: [] for s in SCORE_NAMES} for m in self.methods}
        self.slice_labels: list[np.ndarray] = []
        self.snapshots: list[dict] = []
        self.num_voxels = self.num_lesion_voxels = 0

    # ------------------------------------------------------------------ accumulation
    def add_case(self, name: str, maps: Mapping[str, object], mask, label=None, image=None,
                 voxel_volume_ml: float | None = None, healthy: bool = False,
                 spacing: Sequence[float] | None = None) -> list[dict]:
        """Score one case.

        Args:
            name: case name (for rows and errors).
            maps: method -> anomaly map ``(H, W, D)`` (or ``(1, H, W, D)``); one per method of the evaluation.
            mask: brain mask, same shape (nonzero = brain).
            label: lesion mask, same shape; None only for a healthy case (``healthy=True``).
            image: the scan, same shape, used only for the best/worst montages.
            voxel_volume_ml: volume of one voxel in ml (for the lesion-size breakdown; None: from 1 mm^3).
            healthy: the case has no lesion and no label.
            spacing: voxel spacing in mm per axis (needed by a protocol with ``central_box_mm``).

        Returns:
            the case's rows (one per method).

        Raises:
            ValueError: missing maps, shape mismatch, NaN/Inf in a map, empty scored region, missing label.
        """
        if set(maps) != set(self.methods):
            raise ValueError(f"AnomalyEvaluation: case {name}: maps for {sorted(maps)}, expected {self.methods}.")
        brain, truth = self._case_masks(name, mask, label, healthy)
        kept, region = self._scored_region(name, brain, spacing)
        slice_region = region if self.protocol.slice_region == "scored" else bounding_box(brain)
        labels = truth[region]
        subsample = self._subsample(labels.size)
        lesion_ml = float(truth.sum()) * (1e-3 if voxel_volume_ml is None else float(voxel_volume_ml))
        checked = {method: self._checked_map(name, method, maps[method], brain.shape) for method in self.methods}
        rows = []  # every map was checked above, before anything is accumulated
        for method, amap in checked.items():
            amap = self._postprocess(amap, kept)
            scores = amap[region]
            row = {"case": name, "method": method, "healthy": bool(healthy or not truth.any()),
                   "lesion_voxels": int(labels.sum()), "lesion_ml": round(lesion_ml, 4)}
            row.update(self._add_voxel_scores(method, scores, labels, subsample))
            row["dice_at_threshold"] = self._add_thresholded(method, amap, region, truth)
            row.update(self._add_sample_scores(method, scores, amap, slice_region))
            rows.append(row)
            if method == self.methods[0] and truth.any() and image is not None:
                self._snapshot(name, row["average_precision"], image, amap, truth)
        self.slice_labels.append(slice_has_lesion(slice_region, truth))
        self.volume_labels.append(bool(truth.any()))
        self.case_names.append(name)
        self.cases.extend(rows)
        self.num_voxels += int(region.sum())
        self.num_lesion_voxels += int(labels.sum())
        return rows

    @staticmethod
    def _case_masks(name: str, mask, label, healthy: bool) -> tuple[np.ndarray, np.ndarray]:
        """Bool ``(H, W, D)`` brain and lesion masks of a case (no lesion for a healthy case without a label)."""
        brain = _volume(mask, name, "mask") > 0
        if label is None:
            if not healthy:
                raise ValueError(f"AnomalyEvaluation: case {name} has no lesion label (mark healthy cases healthy).")
            truth = np.zeros(brain.shape, bool)
        else:
            truth = _volume(label, name, "label") > 0
        if truth.shape != brain.shape:
            raise ValueError(f"AnomalyEvaluation: case {name}: label {truth.shape} and mask {brain.shape} differ.")
        return brain, truth

    def _scored_region(self, name: str, brain: np.ndarray,
                       spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(kept, region)``: the brain after the protocol's erosion, and the voxels scored (``kept``, or the whole
        volume when the protocol scores every voxel), both within the protocol's central box if it has one."""
        kept = erode_mask(brain, self.protocol.mask_erosion)
        region = np.ones_like(brain) if self.protocol.voxels == "volume" else kept
        if self.protocol.central_box_mm is not None:
            if spacing is None:
                raise ValueError(f"AnomalyEvaluation: case {name}: protocol {self.protocol.name} scores a central box "
                                 "in mm and needs the voxel spacing (load the case with its affine).")
            box = central_box(brain.shape, self.protocol.central_box_mm, spacing)
            kept, region = kept & box, region & box
        if not kept.any():
            raise ValueError(f"AnomalyEvaluation: case {name}: no voxel left to score (empty or fully eroded mask).")
        return kept, region

    def _subsample(self, size: int) -> np.ndarray | None:
        """Indices of the scored voxels that the protocol pools (drawn with replacement, seeded by the case's
        index), or None when it pools them all."""
        if not self.protocol.voxels_per_volume:
            return None
        rng = np.random.default_rng([self.seed, len(self.case_names)])
        return rng.integers(0, size, self.protocol.voxels_per_volume)

    @staticmethod
    def _checked_map(name: str, method: str, amap, shape: tuple[int, ...]) -> np.ndarray:
        """A method's map as a float32 ``(H, W, D)`` array of the mask's shape, finite."""
        amap = _volume(amap, name, f"map {method!r}").astype(np.float32, copy=False)
        if amap.shape != shape:
            raise ValueError(f"AnomalyEvaluation: case {name}: map {method!r} {amap.shape} and mask {shape} differ.")
        if not np.isfinite(amap).all():
            raise ValueError(f"AnomalyEvaluation: case {name}: map {method!r} contains NaN or Inf.")
        return amap

    def _postprocess(self, amap: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """The protocol's post-processing of a map: zero outside the eroded brain, median filter, clipping."""
        protocol = self.protocol
        if protocol.mask_erosion:
            amap = amap * kept
        amap = median_filter_map(amap, protocol.median_filter)
        if protocol.clip_range is not None:
            amap = np.clip(amap, *protocol.clip_range)
        return amap

    def _add_voxel_scores(self, method: str, scores: np.ndarray, labels: np.ndarray,
                          subsample: np.ndarray | None) -> dict[str, float]:
        """Pool a case's scored voxels (all, or the protocol's subsample) and return its per-volume metrics."""
        volume = ScoreHistogram(self.mantissa_bits)
        volume.update(scores, labels)
        if subsample is None:
            self.histograms[method].merge(volume)  # the pooled counts are the sum of the volumes' counts
        else:
            self.histograms[method].update(scores[subsample], labels[subsample])
        return volume_metrics(volume)

    def _add_thresholded(self, method: str, amap: np.ndarray, region: np.ndarray, truth: np.ndarray) -> float:
        """Dice of the map at the method's threshold (small components removed as the protocol says), counted into
        the pooled confusion; NaN for a method without a threshold."""
        if method not in self.thresholds:
            return float("nan")
        predicted = remove_small_components((amap >= self.thresholds[method]) & region,
                                            self.protocol.min_component_size)
        lesion = truth & region
        self.confusion[method] += [int((predicted & lesion).sum()), int((predicted & ~lesion).sum()),
                                   int((~predicted & lesion).sum())]
        return dice(predicted, lesion)

    def _add_sample_scores(self, method: str, scores: np.ndarray, amap: np.ndarray,
                           slice_region: np.ndarray) -> dict[str, float]:
        """Record the case's slice scores (over ``slice_region``, as the protocol says) and return its case scores
        (mean, max, top-k mean of the scored voxels ``scores``)."""
        case = case_scores(scores, self.protocol.top_k)
        for s, values in slice_scores(amap, slice_region, self.protocol.top_k).items():
            self.slice_scores[method][s].append(values.astype(np.float32))
        for s in SCORE_NAMES:
            self.volume_scores[method][s].append(case[s])
        return case

    def _snapshot(self, name: str, ap: float, image, amap: np.ndarray, truth: np.ndarray) -> None:
        """Keep the axial slice of largest lesion area of the best and worst cases (by the model's AP)."""
        z = int(np.argmax(truth.reshape(-1, truth.shape[-1]).sum(0)))
        image = _volume(image, name, "image")
        self.snapshots.append({"case": name, "average_precision": ap, "slice": z,
                               "image": image[..., z].astype(np.float16), "map": amap[..., z].astype(np.float16),
                               "label": truth[..., z]})
        self.snapshots.sort(key=lambda s: -s["average_precision"])
        if len(self.snapshots) > 2 * self.num_snapshots:
            del self.snapshots[self.num_snapshots]

    # ------------------------------------------------------------------ results
    def best_and_worst(self) -> tuple[list[dict], list[dict]]:
        """Snapshots of the best and the worst cases by the model's per-volume AP (best first, worst last)."""
        n = min(self.num_snapshots, (len(self.snapshots) + 1) // 2)
        return self.snapshots[:n], self.snapshots[len(self.snapshots) - n:][::-1]

    def curves(self) -> dict[str, RankCurve]:
        """Pooled ranking curve per method."""
        return {m: self.histograms[m].curve() for m in self.methods}

    def _pooled(self, method: str, curve: RankCurve) -> dict:
        out: dict = {"average_precision": None, "auroc": None, "best_dice": None, "best_dice_threshold": None,
                     "fpr_at_95_tpr": None, "dice_at_threshold": None}
        if curve.positives:
            out["average_precision"] = curve.average_precision()
            if self.protocol.num_thresholds:
                grid = np.linspace(curve.thresholds[-1], curve.thresholds[0], self.protocol.num_thresholds)
                dices = [curve.dice_at(t) for t in grid]
                best = int(np.argmax(dices))
                out["best_dice"], out["best_dice_threshold"] = float(dices[best]), float(grid[best])
            else:
                out["best_dice"], out["best_dice_threshold"] = curve.best_dice()
            if curve.negatives:
                out["auroc"], out["fpr_at_95_tpr"] = curve.auroc(), curve.fpr_at_tpr(0.95)
        if method in self.thresholds:
            tp, fp, fn = (int(v) for v in self.confusion[method])
            out["threshold"] = self.thresholds[method]
            out["dice_at_threshold"] = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
        return out

    def _sample_level(self, scores: dict[str, list], labels: np.ndarray) -> dict:
        """AUROC and AP of case or slice scores; None when one class is absent."""
        out = {}
        for s, values in scores.items():
            values = np.concatenate(values) if values and isinstance(values[0], np.ndarray) else np.asarray(values)
            if labels.any() and not labels.all():
                curve = curve_from_scores(values, labels)
                out[s] = {"auroc": curve.auroc(), "average_precision": curve.average_precision(),
                          "positives": int(labels.sum()), "negatives": int((~labels).sum())}
            else:
                out[s] = None
        return out

    def lesion_size_breakdown(self, method: str) -> list[dict]:
        """Per-volume metrics of lesion cases grouped by total lesion volume (:data:`LESION_SIZE_BINS_ML`)."""
        groups: dict[str, list[dict]] = {}
        for row in self.cases:
            if row["method"] == method and row["lesion_voxels"] > 0:
                groups.setdefault(_size_bin(row["lesion_ml"]), []).append(row)
        order = [_size_bin(v) for v in (0.0, *LESION_SIZE_BINS_ML)]
        return [{"lesion_volume": b, "num_cases": len(groups[b]),
                 "average_precision": _mean_std([r["average_precision"] for r in groups[b]])["mean"],
                 "best_dice": _mean_std([r["best_dice"] for r in groups[b]])["mean"],
                 "dice_at_threshold": _mean_std([r["dice_at_threshold"] for r in groups[b]])["mean"]}
                for b in order if b in groups]

    def result(self) -> dict:
        """``{"summary": {...}, "cases": [rows]}``; every metric group labelled with the protocol."""
        if not self.case_names:
            raise RuntimeError("AnomalyEvaluation: no case was evaluated.")
        curves = self.curves()
        volume_labels = np.asarray(self.volume_labels)
        slice_labels = np.concatenate(self.slice_labels)
        methods = {}
        for m in self.methods:
            rows = [r for r in self.cases if r["method"] == m and r["lesion_voxels"] > 0]
            methods[m] = {
                "pooled": self._pooled(m, curves[m]),
                "per_volume": {k: _mean_std([r[k] for r in rows])
                               for k in ("average_precision", "auroc", "best_dice", "dice_at_threshold")},
                "sample_volume": self._sample_level(self.volume_scores[m], volume_labels),
                "sample_slice": self._sample_level(self.slice_scores[m], slice_labels),
                "lesion_size": self.lesion_size_breakdown(m),
            }
        p = self.protocol
        summary = {
            "protocol": p.name, "protocol_description": p.description, "protocol_settings": p.as_dict(),
            "num_cases": len(self.case_names), "num_lesion_cases": int(volume_labels.sum()),
            "num_voxels": self.num_voxels, "num_lesion_voxels": self.num_lesion_voxels,
            "pooled_voxels_counted": int(curves[self.methods[0]].positives + curves[self.methods[0]].negatives),
            "thresholds": dict(self.thresholds), "threshold_source": self.threshold_source,
            "histogram_mantissa_bits": self.mantissa_bits, "methods": methods,
        }
        summary["headline"] = {m: {f"{group}.{metric}": self._headline_value(methods[m], group, metric)
                                   for group, metric in p.headline} for m in self.methods}
        return {"summary": summary, "cases": self.cases}

    @staticmethod
    def _headline_value(method_result: dict, group: str, metric: str):
        value = method_result.get(group, {})
        for part in metric.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value
