"""How conspicuous the vesicles of an annotated tomogram are: their membrane contrast.

A network learns vesicles at the contrasts its training tomograms hold. Where a tomogram's
vesicles are fainter than any it saw (residual alignment errors, low defocus), it misses
them although nothing else about the tomogram is unusual (``benchmarks/vesicle_contrast.py``
compares the training set with the cross-domain rows).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def vesicle_contrast(
    tomogram: np.ndarray,
    labels: np.ndarray,
    *,
    membrane_vox: float = 1.5,
    around_vox: tuple[float, float] = (3.0, 6.0),
    skip_planes: int = 12,
) -> float:
    """Mean grey value just outside the vesicles minus that of their membranes, in the
    tomogram's standard deviations (membranes dark: larger is more conspicuous).

    A property of a tomogram and its truth, to compare data sets with. (The filament search
    measures a contrast of its own, :func:`analysis.active_zone.cuts.membrane_contrast`: the
    analysed cytoplasm against the membranes, in SD of the boundary-free remainder, to set its
    path cuts.)

    Parameters
    ----------
    tomogram : numpy.ndarray, shape (z, y, x)
        Membranes dark, as reconstructed.
    labels : numpy.ndarray, int, shape (z, y, x)
        True vesicles (non-zero), whole spheres or drawn outlines.
    membrane_vox : float
        The membrane: vesicle voxels at most this far (voxels) from the background.
    around_vox : (float, float)
        The surroundings: background voxels farther than the first and nearer than the second
        distance (voxels) from a vesicle.
    skip_planes : int
        Planes left out at each z face, where the missing wedge smears vesicles.

    Returns
    -------
    float
        NaN when no membrane or surrounding voxel is left.
    """
    tomogram = np.asarray(tomogram, dtype=np.float64)
    labels = np.asarray(labels)
    if tomogram.shape != labels.shape:
        raise ValueError(f"tomogram {tomogram.shape} and labels {labels.shape} differ in shape")
    sd = tomogram.std()
    inside = ndimage.distance_transform_edt(labels > 0)
    outside = ndimage.distance_transform_edt(labels == 0)
    kept = np.zeros(labels.shape, bool)
    kept[skip_planes : labels.shape[0] - skip_planes] = True
    membrane = (inside > 0) & (inside <= membrane_vox) & kept
    around = (outside > around_vox[0]) & (outside < around_vox[1]) & kept
    if not membrane.any() or not around.any() or sd == 0:
        return float("nan")
    return float((tomogram[around].mean() - tomogram[membrane].mean()) / sd)
