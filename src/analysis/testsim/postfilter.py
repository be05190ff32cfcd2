"""What users do to a reconstruction before segmenting it: smoothing, diffusion, 8-bit files."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Post-filters of :func:`post_filter`.
POST_FILTERS = ("none", "gaussian", "nad")


def perona_malik(
    volume: np.ndarray, iterations: int = 10, kappa: float = 1.5, step: float = 0.1
) -> np.ndarray:
    """Nonlinear (Perona-Malik) diffusion: smooths flat regions, keeps strong edges.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
    iterations : int
        Explicit time steps.
    kappa : float
        Edge threshold, in robust standard deviations of the voxel-to-voxel differences:
        differences well below it diffuse, differences well above it are kept.
    step : float
        Time step; at most 1/6 for a stable explicit scheme in 3-D.

    Returns
    -------
    numpy.ndarray, same shape, float32
    """
    u = np.asarray(volume, dtype=np.float32).copy()
    diffs = np.diff(u, axis=2)
    scale = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) or 1.0
    k = kappa * scale
    for _ in range(iterations):
        change = np.zeros_like(u)
        for axis in range(u.ndim):
            d = np.diff(u, axis=axis)
            flux = d * np.exp(-((d / k) ** 2))
            pad = [(0, 0)] * u.ndim
            pad[axis] = (1, 1)
            change += np.diff(np.pad(flux, pad), axis=axis)
        u += step * change
    return u


def quantise_8bit(volume: np.ndarray, saturate_percent: float = 0.5) -> np.ndarray:
    """Values a volume would keep in an 8-bit file: scaled to 0-255 between two percentiles
    (the extremes saturate) and rounded; returned as float32 on that 0-255 scale."""
    lo, hi = np.percentile(volume, [saturate_percent, 100 - saturate_percent])
    scaled = (np.asarray(volume, dtype=np.float32) - lo) * (255 / max(hi - lo, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.float32)


def post_filter(
    volume: np.ndarray, kind: str, voxel_size_nm: float, sigma_nm: float, iterations: int
) -> np.ndarray:
    """Apply one of :data:`POST_FILTERS`.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
    kind : {"none", "gaussian", "nad"}
    voxel_size_nm : float
    sigma_nm : float
        Standard deviation of the Gaussian filter.
    iterations : int
        Steps of nonlinear anisotropic diffusion (:func:`perona_malik`).
    """
    if kind == "none":
        return volume
    if kind == "gaussian":
        return ndimage.gaussian_filter(volume, sigma_nm / voxel_size_nm).astype(np.float32)
    if kind == "nad":
        return perona_malik(volume, iterations=iterations)
    raise ValueError(f"post_filter must be one of {POST_FILTERS}, not {kind!r}")
