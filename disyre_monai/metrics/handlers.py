"""Deprecated module: ``PooledVoxelMetric`` moved to :mod:`disyre_monai.metrics.pooled`, its ignite handler
``PooledVoxelMetricHandler`` to :mod:`disyre_monai.handlers.pooled_metric`.

The old names still resolve here, with a ``FutureWarning``, until 0.4.0.
"""

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, {"POOLED_METRICS": "disyre_monai.metrics.pooled",
                                     "PooledVoxelMetric": "disyre_monai.metrics.pooled",
                                     "PooledVoxelMetricHandler": "disyre_monai.handlers.pooled_metric"})
