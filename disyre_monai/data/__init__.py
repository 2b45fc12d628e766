"""Data: datalists, datasets, the embedded demo data and its lesion simulator."""

from .datalist import load_datalist
from .demo import demo_datalist, demo_root
from .fixed import FixedSampleDataset
from .lesions import simulate_lesion

__all__ = ["FixedSampleDataset", "demo_datalist", "demo_root", "load_datalist", "simulate_lesion"]
