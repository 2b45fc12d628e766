"""Dataset adapters: public brain MRI datasets, in their official on-disk layouts, to MONAI datalists.

``disyre-monai datalist <dataset> <root> --modality t2`` (:func:`write_datalist`) scans a dataset root,
checks that every scan has its image, lesion label and brain mask where the release ships them, splits the
subjects (seeded, or from a published split file) and writes ``{"metadata", "training", "validation",
"test"}`` with paths relative to the JSON file, ready for ``--datalist`` of the bundle.

Example:
    >>> from disyre_monai.data.adapters import DATASETS, get_layout
    >>> sorted(DATASETS)[:3], get_layout("brats-gli").modalities
    (['atlas', 'brats-gli', 'brats2020'], ('t1', 't1ce', 't2', 'flair'))
"""

from .datasets import DATASETS, get_layout
from .layout import DatasetLayout
from .split_files import load_split_files, read_split_file
from .splits import split_subjects
from .write import make_datalist, scan_dataset, write_datalist

__all__ = [
    "DATASETS",
    "DatasetLayout",
    "get_layout",
    "load_split_files",
    "make_datalist",
    "read_split_file",
    "scan_dataset",
    "split_subjects",
    "write_datalist",
]
