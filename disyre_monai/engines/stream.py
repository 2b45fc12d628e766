"""Deprecated module: the training-data stream moved to :mod:`disyre_monai.data.stream`.

The old names still resolve here, with a ``FutureWarning``, until 0.4.0. ``ResumeStream`` is gone from the
package: the stream is itself a handler (list ``@train#stream`` among the trainer's handlers); the class below
only keeps 0.2.0 configs working until 0.4.0.
"""

from __future__ import annotations

import warnings

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, dict.fromkeys(["ResumableSampleStream", "sample_seed", "stateful_caches"],
                                                  "disyre_monai.data.stream"))


class ResumeStream:
    """Deprecated: attach the :class:`~disyre_monai.data.ResumableSampleStream` itself (``stream.attach(engine)``).

    Args:
        stream: the trainer's data stream.
    """

    def __init__(self, stream) -> None:
        warnings.warn("ResumeStream is deprecated: list the stream itself among the trainer's handlers; "
                      "ResumeStream is removed in 0.4.0.", FutureWarning, stacklevel=2)
        self.stream = stream

    def attach(self, engine) -> None:
        self.stream.attach(engine)
