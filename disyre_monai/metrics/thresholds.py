"""Choosing each method's binarisation threshold on a validation evaluation, as the protocol says."""

from __future__ import annotations

from disyre_monai.metrics.evaluation import AnomalyEvaluation


def calibrate_thresholds(evaluation: AnomalyEvaluation) -> tuple[dict[str, float], str]:
    """Thresholds of every method of a validation ``evaluation``, and a sentence saying how they were chosen.

    With the protocol's ``threshold_policy`` ``"validation_best_dice"`` and lesion voxels in the split: the
    threshold of best pooled Dice (the Behrendt et al. protocol); otherwise (``"healthy_fpr"``, or healthy
    scans only): the threshold whose false-positive rate on the split's lesion-free voxels is the protocol's
    ``healthy_fpr``. The maps were scored under the protocol's region and post-processing, so the threshold
    matches the test evaluation.

    Raises:
        RuntimeError: the evaluation holds no case.
    """
    if not evaluation.case_names:
        raise RuntimeError("calibrate_thresholds: no validation case was evaluated.")
    protocol = evaluation.protocol
    thresholds, sources = {}, set()
    for method, curve in evaluation.curves().items():
        if curve.positives and protocol.threshold_policy == "validation_best_dice":
            thresholds[method] = curve.best_dice()[1]
            sources.add("best pooled Dice on labelled validation cases")
        else:
            thresholds[method] = curve.threshold_at_fpr(protocol.healthy_fpr)
            sources.add(f"false-positive rate {protocol.healthy_fpr:g} on healthy validation voxels")
    cases = len(evaluation.case_names)
    return thresholds, f"{'; '.join(sorted(sources))} ({cases} cases, protocol {protocol.name})"
