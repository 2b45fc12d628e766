"""Data: datalists, dataset adapters, datasets, the embedded demo data and its lesion simulator."""

from .adapters import write_datalist
from .datalist import load_datalist
from .demo import demo_datalist, demo_root
from .fixed import FixedSampleDataset
from .lesions import simulate_lesion

__all__ = ["FixedSampleDataset", "demo_datalist", "demo_root", "load_datalist", "simulate_lesion", "write_datalist"]
