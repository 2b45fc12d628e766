"""Small helpers shared by every component: argument checks (one wording for every bad-argument error),
numpy views, source names of arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def check_number(owner: str, name: str, value: float, low: float | None = None, high: float | None = None) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``owner.name``, the value and the range.

    Args:
        owner: class or function name, shown in the message.
        name: parameter name, shown in the message.
        value: the value to check; must be finite.
        low: inclusive lower bound, or None.
        high: inclusive upper bound, or None.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number in {_range_text(low, high)}, got {value!r}.") from None
    if not np.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{owner}: {name} must be in {_range_text(low, high)}, got {value!r}.")
    return number


def check_int(owner: str, name: str, value: int, low: int | None = None, high: int | None = None) -> int:
    """Like :func:`check_number` for integers (bools and non-integral floats are rejected)."""
    if isinstance(value, bool) or not float(check_number(owner, name, value, low, high)).is_integer():
        raise ValueError(f"{owner}: {name} must be an integer in {_range_text(low, high)}, got {value!r}.")
    return int(value)


def check_range(
    owner: str, name: str, value: Sequence[float] | float, low: float | None = None, high: float | None = None
) -> tuple[float, float]:
    """Parse a ``(min, max)`` pair (a single number ``v`` means ``(v, v)``) inside ``[low, high]``.

    Raises:
        ValueError: naming the parameter when the pair is malformed, out of bounds or ``min > max``.
    """
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{owner}: {name} must be a number or a (min, max) pair, got {value!r}.")
    lo, hi = (check_number(owner, name, v, low, high) for v in pair)
    if lo > hi:
        raise ValueError(f"{owner}: {name} must satisfy min <= max, got {value!r}.")
    return lo, hi


def _range_text(low: float | None, high: float | None) -> str:
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def as_numpy(x) -> np.ndarray:
    """A numpy view of a tensor (detached, on the CPU) or array-like."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def source_name(x, default: str = "<array>") -> str:
    """The file a ``MetaTensor`` was loaded from (``meta["filename_or_obj"]``), else ``default``."""
    return str(getattr(x, "meta", {}).get("filename_or_obj", default))

