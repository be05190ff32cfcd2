"""Per-tomogram robust intensity normalisation, shared by training and inference.

Tomograms differ in offset, scale and sign conventions between reconstructions; the network
sees each one shifted to a zero median and scaled by its central percentile range, computed in
float32 on a fixed subsample so that it costs little on large volumes and is deterministic.
"""

from __future__ import annotations

import numpy as np

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
        raise ValueError("the volume is constant (no intensity range to normalise by)")
    return float(med), scale


def normalise(volume: np.ndarray, params: dict | None = None) -> np.ndarray:
    """Return ``(volume − median) / (p_high − p_low)`` as float32.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
    params : dict, optional
        ``{"method": "percentile", "low": …, "high": …}`` as stored in a checkpoint;
        :data:`DEFAULT_NORMALISATION` by default.
    """
    params = params or DEFAULT_NORMALISATION
    if params.get("method") != "percentile":
        raise ValueError(f"unknown normalisation method {params.get('method')!r}")
    centre, scale = normalisation_stats(volume, params["low"], params["high"])
    out = np.asarray(volume, dtype=np.float32) - np.float32(centre)
    out /= np.float32(scale)
    return out
