"""Deprecated module: failure records moved to :mod:`disyre_monai.failures`.

The old names (``FailureReport``, ``failure_record``, ``root_cause``, ``FAILURE_KEY``) still resolve here, with a
``FutureWarning``, until 0.4.0.
"""

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, dict.fromkeys(
    ["FAILURE_KEY", "FailureReport", "failure_record", "root_cause"], "disyre_monai.failures"))
