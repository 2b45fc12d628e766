"""Figures of an evaluation report: PR and ROC curves, lesion-size breakdown, best/worst case montage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from disyre_monai.io import atomic_savefig

if TYPE_CHECKING:  # annotations only: importing metrics here would close a metrics <-> visualize cycle
    from disyre_monai.metrics.curve import RankCurve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: dict[str, RankCurve], protocol: str, path_pr: Path, path_roc: Path) -> None:
    """Pooled precision-recall and ROC curves of every method (one line each) into two PNG files."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
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
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4.5))
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
    plt.close(fig)


def plot_lesion_sizes(breakdown: dict[str, list[dict]], protocol: str, path: Path) -> None:
    """Grouped bars: mean per-volume AP of each method per lesion-volume bin (case counts on top)."""
    plt = _pyplot()
    bins = list(dict.fromkeys(row["lesion_volume"] for rows in breakdown.values() for row in rows))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    width = 0.8 / max(len(breakdown), 1)
    for i, (method, rows) in enumerate(breakdown.items()):
        by_bin = {row["lesion_volume"]: row for row in rows}
        values = [by_bin[b]["average_precision"] if b in by_bin and by_bin[b]["average_precision"] is not None
                  else 0.0 for b in bins]
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
    plt.close(fig)


def plot_case_snapshots(snapshots: list[dict], title: str, path: Path) -> None:
    """One column per case: the scan's axial slice of largest lesion area, the map overlaid, lesion outline."""
    plt = _pyplot()
    n = max(len(snapshots), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n, 3.2), squeeze=False)
    for ax, snap in zip(axes.flat, snapshots):
        image, amap = np.asarray(snap["image"], np.float32), np.asarray(snap["map"], np.float32)
        ax.imshow(np.rot90(image), cmap="gray")
        top = float(np.percentile(amap[amap > 0], 99.5)) if (amap > 0).any() else 1.0
        ax.imshow(np.ma.masked_less_equal(np.rot90(amap), 0.25 * top), cmap="inferno", vmin=0, vmax=top, alpha=0.6)
        if snap["label"].any():
            ax.contour(np.rot90(snap["label"]), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"{snap['case'][:28]}\nz={snap['slice']}  AP {snap['average_precision']:.3f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=100)
    plt.close(fig)
