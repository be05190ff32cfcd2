"""Per-tomogram intensity normalisation, shared by training and inference.

Tomograms differ in offset, scale and sign conventions between reconstructions; the network
sees each one shifted and scaled by statistics of the whole volume, as its checkpoint records:

``{"method": "percentile", "low": 1, "high": 99}`` (this package's networks)
    zero median, divided by the 1st–99th percentile range, from a fixed subsample in float32
    (cheap on large volumes, deterministic);
``{"method": "zscore", "blur_sigma_vox": 1.0}`` (CryoVesNet's network)
    zero mean, unit standard deviation of the volume blurred by a Gaussian of that σ, as its
    authors prepare tomograms (the blur itself is the network's first layer), estimated on a
    central block of up to 2 million voxels.
"""

from __future__ import annotations

import numpy as np

from analysis.errors import DataError, ParameterError
from analysis.io.memmap import release_pages

#: Default normalisation, as recorded in checkpoints.
DEFAULT_NORMALISATION = {"method": "percentile", "low": 1.0, "high": 99.0}
_MAX_SAMPLES = 2_000_000


def normalisation_stats(
    volume: np.ndarray, low: float = 1.0, high: float = 99.0
) -> tuple[float, float]:
    """Median and percentile range (``high`` − ``low`` percentile) of a volume.

    Large volumes are subsampled on a regular stride (no randomness), so memory-mapped
    tomograms are read only in part.
    """
    step = max(1, int(np.ceil((volume.size / _MAX_SAMPLES) ** (1 / 3))))
    sample = np.asarray(volume[::step, ::step, ::step], dtype=np.float32).ravel()
    release_pages(volume)  # a memory-mapped tomogram stays on disk
    lo, med, hi = np.percentile(sample, [low, 50.0, high])
    scale = float(hi - lo)
    if not np.isfinite(scale) or scale <= 0:
        raise DataError("the volume is constant (no intensity range to normalise by)")
    return float(med), scale


def _blurred_zscore_stats(volume: np.ndarray, sigma_vox: float) -> tuple[float, float]:
    from scipy import ndimage

    edge = max(8, int(round(_MAX_SAMPLES ** (1 / 3))))
    box = tuple(
        slice(max(0, n // 2 - edge // 2), max(0, n // 2 - edge // 2) + edge) for n in volume.shape
    )
    block = np.asarray(volume[box], dtype=np.float32)
    release_pages(volume)
    if sigma_vox > 0:
        block = ndimage.gaussian_filter(block, sigma_vox, mode="nearest")
    std = float(block.std())
    if not np.isfinite(std) or std <= 0:
        raise DataError("the volume is constant (no intensity range to normalise by)")
    return float(block.mean()), std


def centre_and_scale(volume: np.ndarray, params: dict | None = None) -> tuple[float, float]:
    """The shift and scale of ``params`` (see the module notes) for ``volume``."""
    params = params or DEFAULT_NORMALISATION
    method = params.get("method")
    if method == "percentile":
        return normalisation_stats(volume, params["low"], params["high"])
    if method == "zscore":
        return _blurred_zscore_stats(volume, float(params.get("blur_sigma_vox", 0.0)))
    raise ParameterError(f"unknown normalisation method {method!r}")


def normalise(volume: np.ndarray, params: dict | None = None) -> np.ndarray:
    """Return ``(volume − centre) / scale`` as float32, by the method of ``params``.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
    params : dict, optional
        As stored in a checkpoint (see the module notes); :data:`DEFAULT_NORMALISATION` by
        default.
    """
    centre, scale = centre_and_scale(volume, params)
    out = np.asarray(volume, dtype=np.float32) - np.float32(centre)
    out /= np.float32(scale)
    return out
