"""Choosing the probability threshold from the tomogram itself.

A vesicle's membrane is the darkest shell around it. Of all thresholds, the one whose mask
boundary lies on the darkest voxels puts the mask's edge on the membrane (CryoVesNet's
criterion): for every candidate threshold ``t``, the mean tomogram density over the mask's
one-voxel shell (voxels with ``p > t`` that have a 6-neighbour with ``p ≤ t``) is computed, and
the minimum wins. All candidates are evaluated in one pass: a voxel is on the shell exactly
for ``min_neighbour ≤ t < p``, so per-candidate sums are cumulative sums of a histogram.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from analysis.errors import DataError


def threshold_mask(probability: np.ndarray, threshold: float, planes: int = 16) -> np.ndarray:
    """``probability > threshold`` as a bool (z, y, x) mask, a few planes at a time.

    A memory-mapped map is read slab by slab and its pages released, so only the mask (one
    byte a voxel) is held in memory.
    """
    from analysis.io.memmap import map_slabs

    mask = np.empty(probability.shape, bool)
    return map_slabs(lambda p: p > threshold, mask, probability, planes=planes)


#: Candidate thresholds tried by default.
DEFAULT_CANDIDATES = tuple(np.round(np.arange(0.1, 0.951, 0.05), 2))


def shell_density_threshold(
    probability: np.ndarray,
    tomogram: np.ndarray,
    candidates=DEFAULT_CANDIDATES,
    *,
    min_shell_voxels: int = 100,
) -> tuple[float, pd.DataFrame]:
    """Threshold whose mask boundary has the lowest mean tomogram density.

    Parameters
    ----------
    probability : numpy.ndarray, float, shape (z, y, x)
        Network output in [0, 1].
    tomogram : numpy.ndarray, shape (z, y, x)
        The tomogram, membranes dark (as reconstructed).
    candidates : sequence of float
        Thresholds to try, increasing.
    min_shell_voxels : int
        Candidates whose shell has fewer voxels are ignored.

    Returns
    -------
    threshold : float
    table : pandas.DataFrame
        ``threshold, shell_voxels, shell_density`` for every candidate.

    Raises
    ------
    ValueError
        If no candidate gives a shell (the map is empty or saturated).
    """
    if probability.shape != tomogram.shape:
        raise ValueError(f"probability {probability.shape} and tomogram {tomogram.shape} differ")
    t = np.asarray(candidates, dtype=np.float64)
    footprint = ndimage.generate_binary_structure(3, 1)
    footprint[1, 1, 1] = False
    p = np.asarray(probability, dtype=np.float32)
    lowest = ndimage.minimum_filter(p, footprint=footprint, mode="constant", cval=0.0)
    edge = p > lowest  # only these voxels are on the shell for some threshold
    # Voxel on the shell of candidate k  ⇔  lowest ≤ t[k] < p  ⇔  k in [first(lowest), first(p))
    start = np.searchsorted(t, lowest[edge], side="left")
    stop = np.searchsorted(t, p[edge], side="left")
    density = np.asarray(tomogram, dtype=np.float64)[edge]
    n = len(t) + 1
    counts = np.cumsum(np.bincount(start, minlength=n) - np.bincount(stop, minlength=n))[:-1]
    sums = np.cumsum(
        np.bincount(start, density, minlength=n) - np.bincount(stop, density, minlength=n)
    )[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts >= min_shell_voxels, sums / np.maximum(counts, 1), np.nan)
    table = pd.DataFrame({"threshold": t, "shell_voxels": counts, "shell_density": mean})
    if np.all(np.isnan(mean)):
        raise DataError(
            "no threshold gives a mask boundary: the probability map is empty or all vesicle"
        )
    return float(t[int(np.nanargmin(mean))]), table
