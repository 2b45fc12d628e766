"""Apps: the MONAI Label server app that brings DISYRE anomaly maps to 3D Slicer and OHIF."""
