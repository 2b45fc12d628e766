"""Fixtures shared by the tests."""

import numpy as np
import pytest

from tests.helpers import synthetic_brain


@pytest.fixture
def brain2d() -> np.ndarray:
    return synthetic_brain((64, 64))


@pytest.fixture
def brain3d() -> np.ndarray:
    return synthetic_brain((48, 48, 32))
