"""MONAI Label app: serves the DISYRE bundle to 3D Slicer / OHIF and fine-tunes it on a site's unlabelled scans.

Start it with ``disyre-monai label --studies DIR`` (see :func:`~disyre_monai.apps.monailabel.server.start_server`
and ``docs/monailabel.md``). Modules:

- ``server``: prepares a writable app folder (a copy of the bundle) and starts MONAI Label on 127.0.0.1.
- ``app``: :class:`DisyreLabelApp`, the ``MONAILabelApp`` subclass that MONAI Label loads from the app folder.
- ``infer``: :class:`DisyreInferTask`, MONAI Label's bundle inference returning a uint8 label map or the float
  heatmap, with case-level scores in the JSON result.
- ``train``: :class:`DisyreTrainTask`, fine-tuning on the datastore's images without labels.
- ``datastore``: a local datastore that rejects uploads that are not 3D volumes.
- ``asgi``: MONAI Label's web app with HTTP errors that carry a message (unknown model, bad input).
- ``transforms``, ``validation``: the pure parts (scores, label map, volume checks), usable without MONAI Label.

MONAI Label is an optional extra: nothing here imports it until a server, app or task is built.
"""
