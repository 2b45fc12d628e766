"""DISYRE unsupervised anomaly detection for brain MRI, as MONAI components.

Stages: ``transforms`` (preprocessing and synthetic-anomaly corruption), ``schedulers`` (severity <->
timestep), ``networks`` (the restoration U-Net), ``inferers`` (anomaly maps), ``engines`` (training
handlers), ``metrics`` (evaluation), ``visualize`` (figures), ``data`` (datalists and demo data).
"""

__version__ = "0.2.0"

from . import data, engines, inferers, metrics, networks, schedulers, transforms, visualize  # noqa: E402

__all__ = ["data", "engines", "inferers", "metrics", "networks", "schedulers", "transforms", "visualize"]
