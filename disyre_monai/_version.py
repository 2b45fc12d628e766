"""The package version, in one place: ``setup.cfg`` reads it (``attr:``), ``disyre_monai.__version__`` re-exports it,
and a test checks ``bundle/configs/metadata.json`` against it."""

__version__ = "0.4.0"
