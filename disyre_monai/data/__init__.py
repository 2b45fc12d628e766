"""Data: datalists, dataset adapters, datasets (guarded, fixed-sample), the training stream, DataLoader workers and
the embedded demo data (its lesions are simulated by :mod:`disyre_monai.synthetic`)."""

from .adapters import write_datalist
from .datalist import calibration_cases, load_datalist, optional_datalist, prior_datalist
from .demo import demo_datalist, demo_root
from .fixed import FixedSampleDataset
from .guarded import GuardedCacheDataset, GuardedDataset, guarded_collate, is_failure
from .stream import ResumableSampleStream, sample_seed
from .workers import LowerWorkerPriority, available_cpus, data_workers

__all__ = [
    "FixedSampleDataset", "GuardedCacheDataset", "GuardedDataset", "ResumableSampleStream", "calibration_cases",
    "demo_datalist", "demo_root", "guarded_collate", "is_failure", "load_datalist", "optional_datalist",
    "prior_datalist", "sample_seed", "write_datalist", "LowerWorkerPriority", "available_cpus",
    "data_workers",
]
