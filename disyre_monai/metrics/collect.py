"""Deprecated module: ``CaseCollector`` moved to :mod:`disyre_monai.handlers.collect`, ``voxel_volume_ml`` to
:mod:`disyre_monai.metrics.cases`.

The old names still resolve here, with a ``FutureWarning``, until 0.4.0.
"""

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, {"CaseCollector": "disyre_monai.handlers.collect",
                                     "voxel_volume_ml": "disyre_monai.metrics.cases"})
