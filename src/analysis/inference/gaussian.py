"""A Gaussian blur of a volume on several CPU threads, equal to SciPy's to the bit.

:func:`scipy.ndimage.gaussian_filter` runs on one core: it filters along each axis in turn,
one line of voxels at a time. The lines along one axis are independent of each other, so each
pass can be shared among threads by cutting the volume along *another* axis — no margins, no
overlap, the same arithmetic on the same lines, hence the same result. SciPy releases the GIL
while it filters, so the threads run side by side. The spectrum filter of the segmentation
(:func:`analysis.inference.spectrum.apply_gain_filter`, a cascade of eight Gaussians over the
whole tomogram) spends nearly all its time here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage


def _pieces(shape, axis: int, threads: int) -> list[tuple[slice, ...]]:
    """Index tuples that cut ``shape`` into up to ``threads`` pieces along an axis other than
    ``axis`` (the longest such), each holding whole lines along ``axis``."""
    across = max((a for a in range(len(shape)) if a != axis), key=lambda a: shape[a])
    bounds = np.linspace(0, shape[across], min(threads, shape[across]) + 1).astype(int)
    pieces = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        index = [slice(None)] * len(shape)
        index[across] = slice(int(lo), int(hi))
        pieces.append(tuple(index))
    return pieces


def gaussian_filter(
    volume: np.ndarray,
    sigma: float,
    *,
    mode: str = "nearest",
    truncate: float = 4.0,
    threads: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`scipy.ndimage.gaussian_filter` of a float32 volume, each axis's pass shared
    among ``threads`` threads; the result is bit-for-bit SciPy's.

    Parameters
    ----------
    volume : numpy.ndarray, float32, shape (z, y, x)
        The volume (any number of axes ≥ 2 works the same way).
    sigma : float
        Width of the Gaussian in voxels, the same along every axis.
    mode, truncate : str, float
        As for SciPy (``truncate`` in σ: the kernel's radius is ``int(truncate·σ + 0.5)``).
    threads : int
        Threads to share each pass among; 1 calls SciPy directly.
    out : numpy.ndarray, optional
        Float32 array of the volume's shape to write into; it may be ``volume`` itself.

    Returns
    -------
    numpy.ndarray, float32, the shape of ``volume``
    """
    volume = np.asarray(volume)
    if volume.dtype != np.float32:
        raise ValueError(f"gaussian_filter works on float32 volumes, not {volume.dtype}")
    if out is None:
        out = np.empty_like(volume)
    if threads <= 1 or volume.ndim < 2:
        return ndimage.gaussian_filter(volume, sigma, mode=mode, truncate=truncate, output=out)
    source = volume
    with ThreadPoolExecutor(threads) as pool:
        for axis in range(volume.ndim):

            def one(index, axis=axis, source=source):
                ndimage.gaussian_filter1d(
                    source[index], sigma, axis, mode=mode, truncate=truncate, output=out[index]
                )

            # list() waits for every piece and raises the first error
            list(pool.map(one, _pieces(volume.shape, axis, threads)))
            source = out  # later passes work in place, as SciPy's do
    return out
