"""Deprecated module: RNG-state capture moved to :mod:`disyre_monai.handlers.rng` (with the checkpoint handlers).

The old names still resolve here, with a ``FutureWarning``, until 0.4.0.
"""

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, dict.fromkeys(["capture_rng_state", "restore_rng_state"],
                                                  "disyre_monai.handlers.rng"))
