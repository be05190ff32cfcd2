"""Is a stack a tilt series rather than a tomogram, when its header does not say so?

The MRC header's evidence (IMOD's endings ``.st``/``.ali``, per-section tilt angles in an
extended header, IMOD's tilt fields) is read in :mod:`analysis.io.mrc_header`. A stack saved by
other software, converted, or stripped of its extended header carries none of it. Two further
signs are looked for here:

- **A tilt-angle file beside it**: IMOD's ``.tlt`` or ``.rawtlt`` (one angle per line) with the
  same stem, listing as many angles as the stack has images. A reconstruction ending ``.rec``
  is exempt: IMOD writes it beside the ``.tlt`` of its own tilt series.
- **Images that are projections of one object**: a tilt series' images are projections about
  one axis, so the mean of each image across the tilt axis (its profile along the axis) is the
  same for every tilt, up to noise, while the slices of a tomogram show different depths and
  their profiles part with distance. The rule asks, for the axis y or x, that the profile of
  every image correlate with the middle image's at least :data:`PROFILE_RATIO` times as well as
  the next image's does. It is only applied to stacks shaped like a tilt series
  (:data:`IMAGE_COUNTS` images, each at least :data:`MIN_WIDTH_PER_IMAGE` times as wide as
  the image count) and only warns.

Not caught: a raw stack whose tilt axis is far from y and x (SerialEM's is often rotated by
tens of degrees), a thick specimen that leaves and enters the field of view with tilt, and any
stack with fewer or more images than :data:`IMAGE_COUNTS` or images narrower than
:data:`MIN_WIDTH_PER_IMAGE` times their count. Measured on the package's own
data (``tests/test_io_tilt_series.py``): the generator's (v3) tomograms have ratios 0.48-0.74
(48 × 96 × 96 seeds 5, 6; 64 × 128 × 128 seed 301; a 32 × 256 × 256 phantom seed 1: 0.52),
the independent simulator's 0.20 (48 × 96 × 96 seed 3); the generator's tilt series (±60°,
white noise at SNR 0.5 per image) 0.95-0.97. The independent simulator's tilt series, whose
specimen is twice as wide as thick and extends beyond the field, with alignment errors, reach
only 0.1-0.45 and are not caught: real thick specimens may not be either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Endings of IMOD's tilt-angle files (one angle per line, in degrees).
ANGLE_FILE_SUFFIXES = (".tlt", ".rawtlt")
#: Numbers of images of tilt series (±60° in 3° steps is 41, in 1° steps 121; a margin each
#: side); stacks outside are never judged by their statistics.
IMAGE_COUNTS = (35, 181)
#: A stack is judged by its statistics only if y and x are each at least this many times its
#: image count (a 1024-pixel image in a 61-image series: 16.8).
MIN_WIDTH_PER_IMAGE = 6
#: Correlation of the farthest image's profile with the middle one's, relative to the next
#: image's, from which a stack counts as a tilt series.
PROFILE_RATIO = 0.85
#: The next image's profile must correlate at least this well with the middle one's: below,
#: the profiles are noise and say nothing.
MIN_NEIGHBOUR_CORRELATION = 0.5


def angle_file_evidence(path: str | Path, n_images: int) -> str | None:
    """Why the tilt-angle file beside ``path`` makes it a tilt series, or None.

    Parameters
    ----------
    path : path
        The stack.
    n_images : int
        Its number of images (z extent).

    Returns
    -------
    str or None
        E.g. ``"tomo.tlt beside it lists 41 tilt angles (-60° to 60°), one per image"``.
    """
    path = Path(path)
    if path.suffix.lower() == ".rec":
        return None
    for suffix in ANGLE_FILE_SUFFIXES:
        angles_path = path.with_suffix(suffix)
        if not angles_path.is_file():
            continue
        try:
            angles = np.loadtxt(angles_path, ndmin=1, usecols=0)
        except (ValueError, OSError):
            continue  # not a list of numbers: no evidence
        if len(angles) == n_images and np.ptp(angles) >= 10:
            return (
                f"{angles_path.name} beside it lists {len(angles)} tilt angles "
                f"({angles.min():.0f}° to {angles.max():.0f}°), one per image"
            )
    return None


def profile_ratio(data: np.ndarray) -> float:
    """How alike the images' profiles stay with distance, as projections about y or x are.

    Parameters
    ----------
    data : numpy.ndarray, shape (n, y, x)

    Returns
    -------
    float
        The larger over the two axes (profile along y: mean over x; along x: mean over y) of
        the lowest correlation of any image's profile with the middle image's, divided by the
        mean correlation of its two neighbours'; 0 where the neighbours' correlation is below
        :data:`MIN_NEIGHBOUR_CORRELATION`. About 1 for a tilt series about that axis, lower
        for a tomogram.
    """
    n = data.shape[0]
    mid = n // 2
    best = 0.0
    for axis in (2, 1):
        profiles = data.mean(axis=axis, dtype=np.float64)
        profiles -= profiles.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(profiles, axis=1)
        if norms[mid] == 0 or np.any(norms == 0):
            continue
        corr = profiles @ profiles[mid] / (norms * norms[mid])
        neighbours = (corr[mid - 1] + corr[mid + 1]) / 2
        if neighbours >= MIN_NEIGHBOUR_CORRELATION:
            best = max(best, float(np.delete(corr, mid).min() / neighbours))
    return best


def statistics_evidence(data: np.ndarray) -> str | None:
    """Why a stack's shape and images make it look like a tilt series, or None.

    Parameters
    ----------
    data : numpy.ndarray, shape (n, y, x)

    Returns
    -------
    str or None
        None for stacks not shaped like a tilt series (:data:`IMAGE_COUNTS`,
        :data:`MIN_WIDTH_PER_IMAGE`) and for those whose :func:`profile_ratio` is below
        :data:`PROFILE_RATIO`.
    """
    n, ny, nx = data.shape
    low, high = IMAGE_COUNTS
    if not low <= n <= high or min(ny, nx) < MIN_WIDTH_PER_IMAGE * n:
        return None
    ratio = profile_ratio(data)
    if ratio < PROFILE_RATIO:
        return None
    return (
        f"its {n} images of {ny} × {nx} are alike as projections of one object are (each "
        f"image's profile along y or x correlates with the middle one's {ratio:.2f} times as "
        "well as the next image's; a tomogram's slices part with depth)"
    )
