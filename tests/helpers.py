"""Tiny synthetic brains shared by the tests."""

import numpy as np


def synthetic_brain(shape=(64, 64), seed=0) -> np.ndarray:
    """A (1, *shape) float32 'brain': an ellipse/ellipsoid of tissue-like intensities on a zero background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(sum((g / 0.8) ** 2 for g in grids))
    img = np.where(r < 1, 0.6 + 0.3 * np.cos(6 * r) + 0.05 * rng.standard_normal(shape), 0.0)
    return np.clip(img, 0, 1).astype(np.float32)[None]




def slice_inferer(scorer_class, **kwargs):
    """A :class:`~disyre_monai.inferers.SliceAnomalyInferer` around ``scorer_class``: the keyword arguments the
    engine takes (slice_batch_size, amp, cpu_batch_pixels, ...) go to it, the others to the scorer."""
    import inspect

    from disyre_monai.inferers import SliceAnomalyInferer

    engine_args = set(inspect.signature(SliceAnomalyInferer).parameters) - {"scorer"}
    engine = {k: kwargs.pop(k) for k in list(kwargs) if k in engine_args}
    return SliceAnomalyInferer(scorer_class(**kwargs), **engine)
