"""Streaming evaluation at BraTS scale: 369 volumes of 240 x 240 x 155 through ``AnomalyEvaluation``.

Each synthetic volume has an ellipsoidal brain mask (about 39% of the voxels), a random ellipsoidal lesion
and an anomaly map that is higher in the lesion; every case goes through the full per-case pipeline
(pooled histogram, per-volume AP/AUROC/best Dice, Dice at a threshold, case and slice scores). Prints
voxels per second, peak memory (resident set) and the targets: under 2 GB peak and under 5 minutes.

Exactness is checked on the first ``--check`` volumes: the streamed pooled AP/AUROC are compared with
scikit-learn on the same voxels held in memory (skipped when scikit-learn is absent).

    python benchmarks/metrics_scale.py                 # 369 volumes, protocol exact
    python benchmarks/metrics_scale.py --volumes 20 --protocol behrendt
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from disyre_monai.metrics import AnomalyEvaluation

SHAPE = (240, 240, 155)


def brain_mask() -> np.ndarray:
    grids = np.ogrid[tuple(slice(-1, 1, complex(0, n)) for n in SHAPE)]
    return (grids[0] / 0.75) ** 2 + (grids[1] / 0.85) ** 2 + (grids[2] / 0.9) ** 2 < 1


def synthetic_case(index: int, brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An anomaly map (float32, 0 outside the brain) and a lesion label (bool) for case ``index``."""
    rng = np.random.default_rng(index)
    centre = rng.integers((80, 80, 50), (160, 160, 105))
    radius = rng.integers(5, 25)
    grids = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    label = sum(((g - c) / radius) ** 2 for g, c in zip(grids, centre)) < 1
    label &= brain
    amap = rng.random(SHAPE, dtype=np.float32)
    amap *= np.float32(0.5)
    amap[label] += np.float32(0.35)
    amap *= brain
    return amap, label


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=369)
    parser.add_argument("--protocol", default="exact")
    parser.add_argument("--check", type=int, default=3, help="volumes compared with scikit-learn (0: none)")
    args = parser.parse_args()
    brain = brain_mask()
    baseline_mb = peak_rss_mb()
    evaluation = AnomalyEvaluation(args.protocol, ["model"], thresholds={"model": 0.6})
    check_scores, check_labels = [], []
    start = time.perf_counter()
    generate = 0.0
    for i in range(args.volumes):
        t0 = time.perf_counter()
        amap, label = synthetic_case(i, brain)
        generate += time.perf_counter() - t0
        evaluation.add_case(f"case_{i:03d}", {"model": amap}, brain, label)
        if i < args.check:
            check_scores.append(amap[brain])
            check_labels.append(label[brain])
        if (i + 1) % 25 == 0 or i + 1 == args.volumes:
            elapsed = time.perf_counter() - start
            print(f"  {i + 1:4d}/{args.volumes} volumes  {elapsed:6.1f} s  peak RSS {peak_rss_mb():7.0f} MB",
                  file=sys.stderr, flush=True)
    result = evaluation.result()
    total = time.perf_counter() - start
    metric_seconds = total - generate
    summary = result["summary"]
    pooled = summary["methods"]["model"]["pooled"]
    voxels = summary["num_voxels"]
    peak = peak_rss_mb()
    print(f"protocol {summary['protocol']}: {args.volumes} volumes of {SHAPE}, {voxels:,} brain voxels "
          f"({summary['num_lesion_voxels']:,} lesion)")
    print(f"pooled AP {pooled['average_precision']:.6f}  AUROC {pooled['auroc']:.6f}  "
          f"best Dice {pooled['best_dice']:.6f}")
    print(f"wall time {total:.1f} s (of which {generate:.1f} s generating synthetic data); "
          f"metrics {voxels / metric_seconds / 1e6:.2f} M voxels/s")
    print(f"peak resident memory {peak:.0f} MB (interpreter and libraries before the run: {baseline_mb:.0f} MB); "
          f"histogram {evaluation.histograms['model'].nbytes / 2**20:.1f} MiB")
    print(f"targets: peak < 2048 MB: {peak < 2048} ({peak / 2048:.2f} of target); "
          f"time < 300 s: {total < 300} ({total / 300:.2f} of target)")
    if args.check:
        try:
            from sklearn.metrics import average_precision_score, roc_auc_score
        except ImportError:
            print("exactness check skipped: scikit-learn is not installed")
            return 0
        subset = AnomalyEvaluation(args.protocol, ["model"])
        for i in range(args.check):
            amap, label = synthetic_case(i, brain)
            subset.add_case(f"case_{i:03d}", {"model": amap}, brain, label)
        curve = subset.curves()["model"]
        scores, labels = np.concatenate(check_scores), np.concatenate(check_labels)
        ap_err = abs(curve.average_precision() - average_precision_score(labels, scores))
        auc_err = abs(curve.auroc() - roc_auc_score(labels, scores))
        print(f"exactness on {args.check} volumes ({scores.size:,} voxels) vs scikit-learn: |dAP| {ap_err:.2e}, "
              f"|dAUROC| {auc_err:.2e} (target < 1e-4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
