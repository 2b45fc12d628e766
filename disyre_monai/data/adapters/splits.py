"""Seeded, subject-level splits: every scan of one subject lands in the same split.

The order is a keyed hash, not a random generator: subjects are sorted by ``sha256("<seed>:<subject>")``
and cut into test, validation and training in that order. The same seed and subject list give the same
split on any machine and any Python/NumPy version, and each subject's place depends only on its own id.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from disyre_monai.utils import check_int, check_number

__all__ = ["SPLITS", "DEFAULT_FRACTIONS", "check_fractions", "split_subjects"]

SPLITS = ("training", "validation", "test")
#: role -> (val_fraction, test_fraction) used when they are not given. Lesion datasets are evaluation data:
#: all validation (threshold selection, as in Behrendt et al.) or test, 10/90 like the UPD benchmark's split.
DEFAULT_FRACTIONS = {"healthy": (0.1, 0.1), "lesion": (0.1, 0.9)}


def check_fractions(val_fraction, test_fraction, owner: str = "split_subjects") -> tuple[float, float]:
    """Both fractions in [0, 1] with a sum of at most 1, else ``ValueError`` naming them."""
    val = check_number(owner, "val_fraction", val_fraction, 0.0, 1.0)
    test = check_number(owner, "test_fraction", test_fraction, 0.0, 1.0)
    if val + test > 1.0 + 1e-9:
        raise ValueError(f"{owner}: val_fraction + test_fraction must be at most 1, got {val} + {test}.")
    return val, test


def split_subjects(
    subjects: Iterable[str], seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> dict[str, list[str]]:
    """Assign each distinct subject to ``"training"``, ``"validation"`` or ``"test"``.

    Args:
        subjects: subject ids (repeats allowed: one subject, several scans).
        seed: any integer; a different seed gives a different split.
        val_fraction: share of subjects in validation, in [0, 1].
        test_fraction: share of subjects in test, in [0, 1]; ``val_fraction + test_fraction <= 1``, the
            rest is training. Counts are rounded half up, from the cumulative fractions, so the three
            counts always add up to the number of subjects.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, each list sorted.

    Example:
        >>> split_subjects(["a", "b", "c", "d"], seed=0, val_fraction=0.25, test_fraction=0.25)["test"]
        ['d']
    """
    seed = check_int("split_subjects", "seed", seed)
    val, test = check_fractions(val_fraction, test_fraction)
    unique = sorted(set(subjects))
    order = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(order)
    n_test = min(n, math.floor(test * n + 0.5))
    n_test_val = min(n, math.floor((test + val) * n + 0.5))
    return {
        "training": sorted(order[n_test_val:]),
        "validation": sorted(order[n_test:n_test_val]),
        "test": sorted(order[:n_test]),
    }
