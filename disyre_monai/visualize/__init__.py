"""Visualisation: anomaly-map overlay montages for people to look at."""

from .overlay import SaveOverlayMontaged, overlay_montage

__all__ = ["SaveOverlayMontaged", "overlay_montage"]
