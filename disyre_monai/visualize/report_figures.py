"""Figures of an evaluation report: PR and ROC curves, lesion-size breakdown, best/worst case montage.

Figures are ``matplotlib.figure.Figure`` objects, not pyplot's: drawing them touches no global state, needs no
display and no backend choice, and they are freed with the last reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from disyre_monai.io import atomic_savefig
from disyre_monai.metrics.curve import RankCurve
from disyre_monai.metrics.evaluation import AnomalyEvaluation
from disyre_monai.visualize.overlay import draw_overlay


def write_report_figures(result: dict, evaluation: AnomalyEvaluation, output_dir: str | Path) -> None:
    """The figures of an evaluation result into ``output_dir``: ``pr_curve.png``, ``roc_curve.png``,
    ``lesion_size.png`` (when lesions were sized) and ``best_cases.png`` / ``worst_cases.png``.

    Args:
        result: :meth:`AnomalyEvaluation.result` of ``evaluation``.
        evaluation: the evaluation (its curves and case snapshots).
        output_dir: the report folder.
    """
    output_dir = Path(output_dir)
    summary = result["summary"]
    protocol = summary["protocol"]
    plot_curves(evaluation.curves(), protocol, output_dir / "pr_curve.png", output_dir / "roc_curve.png")
    breakdown = {m: v["lesion_size"] for m, v in summary["methods"].items() if v["lesion_size"]}
    if breakdown:
        plot_lesion_sizes(breakdown, protocol, output_dir / "lesion_size.png")
    best, worst = evaluation.best_and_worst()
    if best:
        plot_case_snapshots(best, f"best cases by {evaluation.methods[0]} AP ({protocol})",
                            output_dir / "best_cases.png")
        plot_case_snapshots(worst, f"worst cases by {evaluation.methods[0]} AP ({protocol})",
                            output_dir / "worst_cases.png")


def plot_curves(curves: dict[str, RankCurve], protocol: str, path_pr: Path, path_roc: Path) -> None:
    """Pooled precision-recall and ROC curves of every method (one line each) into two PNG files."""
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    prevalence = None
    for method, curve in curves.items():
        if not curve.positives:
            continue
        precision, recall, _ = curve.precision_recall()
        ax.step(recall, precision, where="post", label=f"{method} (AP {curve.average_precision():.3f})")
        prevalence = curve.positives / (curve.positives + curve.negatives)
    if prevalence is not None:
        ax.axhline(prevalence, color="grey", lw=0.8, ls="--", label=f"prevalence {prevalence:.4f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"voxel PR curve ({protocol})")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path_pr, dpi=100)

    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    for method, curve in curves.items():
        if curve.positives and curve.negatives:
            fpr, tpr, _ = curve.roc()
            ax.plot(fpr, tpr, label=f"{method} (AUROC {curve.auroc():.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title=f"voxel ROC curve ({protocol})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path_roc, dpi=100)


def plot_lesion_sizes(breakdown: dict[str, list[dict]], protocol: str, path: Path) -> None:
    """Grouped bars: mean per-volume AP of each method per lesion-volume bin (case counts on top)."""
    bins = list(dict.fromkeys(row["lesion_volume"] for rows in breakdown.values() for row in rows))
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    width = 0.8 / max(len(breakdown), 1)
    for i, (method, rows) in enumerate(breakdown.items()):
        by_bin = {row["lesion_volume"]: row for row in rows}
        values = [by_bin[b]["average_precision"] if b in by_bin else None for b in bins]
        values = [v if v is not None and np.isfinite(v) else 0.0 for v in values]  # undefined AP: an empty bar
        bars = ax.bar(np.arange(len(bins)) + i * width, values, width, label=method)
        if i == 0:
            for bar, b in zip(bars, bins):
                ax.annotate(f"n={by_bin[b]['num_cases']}", (bar.get_x(), bar.get_height()), fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, bins)
    ax.set(xlabel="total lesion volume per case", ylabel="mean per-volume AP", ylim=(0, 1.05),
           title=f"AP by lesion size ({protocol})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)


def plot_case_snapshots(snapshots: list[dict], title: str, path: Path) -> None:
    """One column per case: the scan's axial slice of largest lesion area, the map overlaid, lesion outline."""
    n = max(len(snapshots), 1)
    fig = Figure(figsize=(2.8 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, snap in zip(axes.flat, snapshots):
        image, amap = np.asarray(snap["image"], np.float32), np.asarray(snap["map"], np.float32)
        top = float(np.percentile(amap[amap > 0], 99.5)) if (amap > 0).any() else 1.0
        draw_overlay(ax, image, amap, snap["label"], top, alpha=0.6)
        ax.set_title(f"{snap['case'][:28]}\nz={snap['slice']}  AP {snap['average_precision']:.3f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
