"""Shared fixtures: small files made by the tests themselves (no third-party data)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.io import write_mrc


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture
def small_volume(rng):
    """A float32 volume (z, y, x) = (6, 7, 8) of random values."""
    return rng.normal(size=(6, 7, 8)).astype(np.float32)


@pytest.fixture
def mrc_path(tmp_path, small_volume):
    """An MRC file of ``small_volume`` at 2.2 nm voxels."""
    return write_mrc(tmp_path / "tomo.mrc", small_volume, 2.2)
