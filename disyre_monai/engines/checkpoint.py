"""Deprecated module: the checkpoint handlers moved to :mod:`disyre_monai.handlers.checkpoint`.

The old names still resolve here, with a ``FutureWarning``, until 0.4.0.
"""

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, dict.fromkeys(
    ["CHECKPOINT_PATTERN", "AtomicCheckpointSaver", "CheckpointResumer", "latest_checkpoint", "list_checkpoints"],
    "disyre_monai.handlers.checkpoint"))
