"""DISYRE unsupervised anomaly detection for brain MRI, as MONAI components.

Stages: ``transforms`` (input checks, preprocessing and synthetic-anomaly corruption), ``schedulers`` (severity
<-> timestep), ``networks`` (the restoration U-Net), ``inferers`` (anomaly maps), ``data`` (datalists, datasets,
the training stream, demo data), ``handlers`` (ignite handlers: checkpoints, reports, calibration), ``engines``
(the prepare-batch and guarded evaluator around MONAI's engines), ``metrics`` (evaluation), ``visualize``
(figures), ``synthetic`` (simulated lesions and raw cases), ``commands`` (the ``disyre-monai`` commands and the
bundle's locator); ``failures`` (per-case failure reports), ``io`` (atomic files). The README's code map shows
which stage may import which.
"""

from . import data, engines, handlers, inferers, metrics, networks, schedulers, transforms, visualize  # noqa: E402
from ._version import __version__

__all__ = ["__version__", "data", "engines", "handlers", "inferers", "metrics", "networks", "schedulers",
           "transforms", "visualize"]
