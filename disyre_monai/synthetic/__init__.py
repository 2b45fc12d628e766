"""Synthetic test cases with a known answer: the seeded lesion simulator (the demo patients, the held-out check)
and the raw-case builder (a real full head moved, resliced and shaded like a scan from the scanner, next to the
same case in the model's space)."""

from .lesions import simulate_lesion
from .raw_case import build_raw_case, load_head

__all__ = ["build_raw_case", "load_head", "simulate_lesion"]
