"""The evaluation report: pooled voxel metrics for DISYRE and baselines, per-case CSV, PR plot (all atomic)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.inferers import Inferer

from disyre_monai.inferers.baselines import ZScoreInferer
from disyre_monai.io import atomic_savefig, atomic_write, atomic_write_json
from disyre_monai.metrics.voxel import average_precision, best_dice, dice_at, precision_recall, roc_auc
from disyre_monai.utils import as_numpy, source_name

PROTOCOL = "pooled_brain_voxels"
PROTOCOL_TEXT = (
    "pooled over every brain-mask voxel of every test volume (no subsampling); one global threshold; "
    "AP = step-wise average precision, best Dice = maximum over all thresholds of the pooled PR curve"
)


class AnomalyReport:
    """Collect anomaly maps, lesion labels and brain masks from an evaluator; report metrics at the end.

    The model's map (``pred_key``) is scored next to each baseline (computed from ``image_key`` by an
    inferer such as :class:`~disyre_monai.inferers.ZScoreInferer`), under protocol ``pooled_brain_voxels``.
    Writes ``metrics.json``, ``per_case.csv`` and ``pr_curve.png`` into ``output_dir`` and prints a summary.

    Args:
        output_dir: folder of the report files.
        baselines: name -> inferer called as ``inferer(image[None], None, mask=mask[None])``
            (default ``{"zscore": ZScoreInferer()}``; ``{}`` for none).
        model_name: name of the model's map in the report.
        pred_key, label_key, mask_key, image_key: keys of the decollated evaluator output.
    """

    def __init__(
        self,
        output_dir: str,
        baselines: Mapping[str, Inferer] | None = None,
        model_name: str = "disyre",
        pred_key: str = "pred",
        label_key: str = "label",
        mask_key: str = "mask",
        image_key: str = "image",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.baselines = dict({"zscore": ZScoreInferer()} if baselines is None else baselines)
        self.model_name = model_name
        self.keys = (pred_key, label_key, mask_key, image_key)
        self.methods = [model_name, *self.baselines]
        self.reset()

    def reset(self) -> None:
        self.cases: list[str] = []
        self.labels: list[np.ndarray] = []
        self.scores: dict[str, list[np.ndarray]] = {m: [] for m in self.methods}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._report)

    def add_case(self, name: str, pred, label, mask, image) -> None:
        """Add one case: ``pred``, ``label``, ``mask`` ``(1, *spatial)``; ``image`` ``(C, *spatial)``."""
        pred, label, mask = as_numpy(pred), as_numpy(label), as_numpy(mask)
        brain = mask[0] > 0
        if label.shape[1:] != brain.shape or pred.shape[1:] != brain.shape:
            raise ValueError(f"AnomalyReport: case {name}: map, label and mask shapes differ.")
        self.cases.append(name)
        self.labels.append(label[0][brain] > 0)
        self.scores[self.model_name].append(pred[0][brain].astype(np.float32))
        image_t, mask_t = torch.as_tensor(as_numpy(image))[None], torch.as_tensor(mask)[None]
        for method, inferer in self.baselines.items():
            self.scores[method].append(as_numpy(inferer(image_t, None, mask=mask_t))[0, 0][brain].astype(np.float32))

    def _collect(self, engine: Engine) -> None:
        """Maps from the engine's output, label/mask/image from its batch (the output holds no mask)."""
        pred_key, label_key, mask_key, image_key = self.keys
        for out, item in zip(engine.state.output, engine.state.batch):  # both decollated by MONAI
            name = Path(source_name(item[image_key], f"case_{len(self.cases)}")).name
            if label_key not in item:
                raise KeyError(f"AnomalyReport: case {name} has no {label_key!r} (lesion mask) to evaluate against.")
            self.add_case(name, out[pred_key], item[label_key], item[mask_key], item[image_key])

    def _pooled(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """All cases' labels, and each method's scores, concatenated."""
        return np.concatenate(self.labels), {m: np.concatenate(self.scores[m]) for m in self.methods}

    def compute(self, pooled: tuple[np.ndarray, dict[str, np.ndarray]] | None = None) -> dict:
        """Pooled metrics per method and per-case rows (Dice at each method's pooled best threshold)."""
        labels, pooled_scores = pooled or self._pooled()
        summary: dict = {"protocol": PROTOCOL, "protocol_description": PROTOCOL_TEXT, "num_cases": len(self.cases),
                         "num_voxels": int(labels.size), "num_lesion_voxels": int(labels.sum()), "methods": {}}
        rows = []
        for method, scores in pooled_scores.items():
            dice, threshold = best_dice(scores, labels)
            summary["methods"][method] = {
                "average_precision": average_precision(scores, labels), "auroc": roc_auc(scores, labels),
                "best_dice": dice, "best_dice_threshold": threshold,
            }
            for case, s, y in zip(self.cases, self.scores[method], self.labels):
                rows.append({
                    "case": case, "method": method, "lesion_voxels": int(y.sum()),
                    "average_precision": average_precision(s, y) if y.any() else float("nan"),
                    "dice_at_pooled_threshold": dice_at(s, y, threshold), "max_score": float(s.max()),
                    "mean_score": float(s.mean()),
                })
        return {"summary": summary, "cases": rows}

    def _report(self, engine: Engine | None = None) -> dict:
        if not self.cases:
            raise RuntimeError("AnomalyReport: no case was evaluated.")
        pooled = self._pooled()
        result = self.compute(pooled)
        atomic_write_json(self.output_dir / "metrics.json", result["summary"])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(result["cases"][0]))
        writer.writeheader()
        writer.writerows(result["cases"])
        atomic_write(self.output_dir / "per_case.csv", lambda f: f.write(buffer.getvalue()), binary=False)
        self._plot(*pooled, result["summary"]["methods"])
        lines = [f"anomaly detection, protocol {PROTOCOL} ({len(self.cases)} cases):"]
        for method, m in result["summary"]["methods"].items():
            lines.append(f"  {method:10s} AP {m['average_precision']:.4f}  best Dice {m['best_dice']:.4f}  "
                         f"AUROC {m['auroc']:.4f}")
        print("\n".join(lines), flush=True)
        if engine is not None:
            engine.state.metrics.update({f"{k}_{method}": v for method, m in result["summary"]["methods"].items()
                                         for k, v in m.items() if k != "best_dice_threshold"})
        return result

    def _plot(self, labels: np.ndarray, pooled_scores: dict[str, np.ndarray], metrics: dict) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4.5))
        for method, scores in pooled_scores.items():
            precision, recall, _ = precision_recall(scores, labels)
            ap = metrics[method]["average_precision"]
            ax.step(recall, precision, where="post", label=f"{method} (AP {ap:.3f})")
        ax.axhline(labels.mean(), color="grey", lw=0.8, ls="--", label=f"prevalence {labels.mean():.4f}")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"voxel PR curve ({PROTOCOL})")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        atomic_savefig(fig, self.output_dir / "pr_curve.png", dpi=100)
        plt.close(fig)
