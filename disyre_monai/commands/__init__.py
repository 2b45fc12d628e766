"""Commands: every ``disyre-monai`` command and its argument handling (``cli.py`` maps each command to one
function), and the bundle's locator, config readers and copy (``bundle.py``).

Nothing here is imported by the pipeline stages below; the bundle configs reach ``bundle.bundle_root`` by its
dotted path. The modules are imported on demand (``disyre-monai CMD`` imports only CMD's module), so an optional
extra (MONAI Label, ONNX Runtime, SimpleITK) is needed only by the command that uses it.
"""
