"""DISYRE unsupervised anomaly detection for brain MRI, as MONAI components.

Stages: ``transforms`` (preprocessing and synthetic-anomaly corruption), ``schedulers`` (severity <->
timestep), ``networks`` (the restoration U-Net), ``inferers`` (anomaly maps), ``data`` (demo data).
"""

__version__ = "0.1.0"
