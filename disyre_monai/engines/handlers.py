"""Deprecated module: ``GradientClipping`` moved to :mod:`disyre_monai.handlers.gradient_clipping`.

The old name still resolves here, with a ``FutureWarning``, until 0.4.0.
"""

from disyre_monai.utils import moved_names

__getattr__ = moved_names(__name__, {"GradientClipping": "disyre_monai.handlers.gradient_clipping"})
