"""A sphere per vesicle from the tomogram's radial density profile.

Around a first guess of the centre (the label's centroid), the tomogram is averaged over
spherical shells 0.5 voxel thick: the radial profile. The membrane is its darkest dip; the
vesicle's outer radius is where the profile, going outwards from the dip, has climbed half way
back to the next maximum, and the membrane thickness is the width of the dip at that level.
The centre is refined first by cross-correlating the box with the sphere the profile describes
(the profile spun around the centre), as CryoVesNet does, to sub-voxel precision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import fft, ndimage

from analysis.io.labels import with_nm_columns

_BIN = 0.5  # radial bin width, voxels


def _box(centre, half: int, shape):
    lo = np.maximum(np.round(centre).astype(int) - half, 0)
    hi = np.minimum(np.round(centre).astype(int) + half + 1, shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), lo


def _radii(shape, centre) -> np.ndarray:
    """Distance of every voxel of a box of ``shape`` from ``centre`` (box coordinates)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)))


def radial_profile(box: np.ndarray, centre: np.ndarray, max_radius: float) -> np.ndarray:
    """Mean of ``box`` over shells of 0.5 voxel around ``centre`` (box coordinates, z, y, x).

    Returns an array of length ``ceil(max_radius / 0.5)``; shells without voxels are NaN.
    """
    return _shell_means(box, _radii(box.shape, centre), max_radius)


def _shell_means(box: np.ndarray, r: np.ndarray, max_radius: float) -> np.ndarray:
    n = int(np.ceil(max_radius / _BIN))
    idx = (r / _BIN).astype(int).ravel()
    keep = idx < n
    sums = np.bincount(idx[keep], box.ravel()[keep].astype(np.float64), minlength=n)
    counts = np.bincount(idx[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _refine_centre(
    box: np.ndarray, centre: np.ndarray, r: np.ndarray, profile: np.ndarray, reach: int = 3
):
    """Shift ``centre`` to the best match of the box with the sphere of ``profile``.

    ``r`` holds the distances of the box's voxels from ``centre``.
    """
    valid = np.nan_to_num(profile, nan=np.nanmean(profile))
    template = np.interp(r / _BIN, np.arange(len(valid)), valid, right=valid[-1])
    template -= template.mean()
    image = box - box.mean()
    # Cross-correlation by FFT; only shifts up to ``reach`` voxels are considered. Zero
    # padding by ``reach`` makes it linear (nothing wraps around the box) and rounds the
    # size up to one the FFT is fast for: box edges are often primes, 2-4× slower.
    size = [fft.next_fast_len(n + reach, real=True) for n in box.shape]
    corr = fft.irfftn(
        fft.rfftn(image, size) * np.conj(fft.rfftn(template, size)), size, axes=(0, 1, 2)
    )
    window = [np.r_[0 : reach + 1, n - reach : n] for n in size]
    sub = corr[np.ix_(*window)]
    best = np.unravel_index(np.argmax(sub), sub.shape)
    shift = np.zeros(3)
    for axis, (i, w) in enumerate(zip(best, window, strict=True)):
        s = w[i] if w[i] <= reach else w[i] - size[axis]
        # parabola through the peak and its neighbours along this axis: sub-voxel shift
        idx = [list(best) for _ in range(3)]
        around = [(i - 1) % len(w), i, (i + 1) % len(w)]
        for k, j in enumerate(around):
            idx[k][axis] = j
        a, b, c = (sub[tuple(ix)] for ix in idx)
        denom = a - 2 * b + c
        frac = 0.5 * (a - c) / denom if denom < 0 else 0.0
        shift[axis] = s + float(np.clip(frac, -0.5, 0.5))
    score = float(sub[best] / (np.linalg.norm(image) * np.linalg.norm(template) + 1e-12))
    return centre + shift, score


def _membrane(profile: np.ndarray, guess_vox: float):
    """(outer radius, membrane thickness, dip depth) in voxels, or None if there is no dip."""
    smooth = (
        ndimage.convolve1d(
            np.nan_to_num(profile, nan=np.nanmean(profile)), [1, 2, 1], mode="nearest"
        )
        / 4
    )
    lo, hi = int(0.5 * guess_vox / _BIN), min(int(1.5 * guess_vox / _BIN) + 1, len(smooth) - 2)
    if hi <= lo + 2:
        return None
    k = lo + int(np.argmin(smooth[lo:hi]))
    outside = smooth[k : min(k + int(4 / _BIN) + 1, len(smooth))]
    peak = float(outside.max())
    inside = smooth[max(k - int(4 / _BIN), 0) : k + 1]
    depth = peak - smooth[k]
    if depth <= 0:
        return None
    half_out = smooth[k] + depth / 2
    half_in = smooth[k] + (float(inside.max()) - smooth[k]) / 2

    def crossing(direction, level):
        j = k
        while 0 < j < len(smooth) - 1 and smooth[j] < level:
            j += direction
        # linear interpolation between j - direction (below) and j (at or above the level)
        a, b = smooth[j - direction], smooth[j]
        frac = (level - a) / (b - a) if b != a else 0.0
        return (j - direction + direction * frac) * _BIN

    outer = crossing(+1, half_out)
    inner = crossing(-1, half_in)
    return outer + _BIN / 2, outer - inner, depth


def fit_sphere(
    tomogram: np.ndarray, centre_vox, radius_guess_vox: float, *, iterations: int = 2
) -> dict:
    """Fit one vesicle: centre, outer radius, membrane thickness, lumen density, fit score.

    Parameters
    ----------
    tomogram : numpy.ndarray, shape (z, y, x)
        Membranes dark.
    centre_vox : array-like of 3 floats
        First guess of the centre (z, y, x), voxels.
    radius_guess_vox : float
        First guess of the outer radius, voxels (e.g. from the mask's volume).

    Returns
    -------
    dict
        ``z_vox, y_vox, x_vox, radius_vox, membrane_thickness_vox, lumen_density,
        membrane_contrast, fit_score, profile`` (``radius_vox`` NaN when no membrane dip is
        found; ``profile`` is the radial profile in 0.5-voxel bins).
    """
    centre = np.asarray(centre_vox, dtype=np.float64)
    half = int(np.ceil(1.6 * radius_guess_vox)) + 4
    score = np.nan
    for step in range(iterations + 1):
        sl, lo = _box(centre, half, tomogram.shape)
        box = np.asarray(tomogram[sl], dtype=np.float64)
        local = centre - lo
        r = _radii(box.shape, local)
        profile = _shell_means(box, r, half)
        if step == iterations:
            break
        moved, score = _refine_centre(box, local, r, profile)
        if np.linalg.norm(moved - local) > 0.5 * radius_guess_vox:
            break  # a jump of half a vesicle is not a refinement; keep the centre
        centre = moved + lo
    found = _membrane(profile, radius_guess_vox)
    radius, thickness, depth = found if found else (np.nan, np.nan, np.nan)
    lumen_r = int(0.5 * (radius if found else radius_guess_vox) / _BIN)
    inner = profile[: max(lumen_r, 1)]
    # a tiny candidate can have no voxel in its innermost shell: no lumen density then
    lumen = float(np.nanmean(inner)) if np.isfinite(inner).any() else np.nan
    return {
        "z_vox": centre[0],
        "y_vox": centre[1],
        "x_vox": centre[2],
        "radius_vox": radius,
        "membrane_thickness_vox": thickness,
        "lumen_density": lumen,
        "membrane_contrast": depth,
        "fit_score": score,
        "profile": profile,
    }


def fit_vesicles(labels: np.ndarray, tomogram: np.ndarray, voxel_size_nm: float) -> pd.DataFrame:
    """Fit a sphere to every labelled vesicle (see :func:`fit_sphere`).

    The first guess is each label's centroid and the radius of the sphere of its volume.

    Returns
    -------
    pandas.DataFrame
        One row per label: ``label, mask_radius_vox`` and the fields of :func:`fit_sphere`
        (the profile in column ``profile``), plus ``membrane_thickness_nm``.
    """
    import cc3d

    from analysis.io.memmap import release_pages

    # int32 labels are read as uint32 without a copy (ids are positive)
    unsigned = labels.view(np.uint32) if labels.dtype == np.int32 else labels.astype(np.uint32)
    stats = cc3d.statistics(unsigned)
    release_pages(labels)
    rows = []
    for label in range(1, len(stats["voxel_counts"])):
        if label % 64 == 0:
            release_pages(tomogram)  # a memory-mapped tomogram keeps only the current boxes
        volume = int(stats["voxel_counts"][label])
        if volume == 0:
            continue
        r_mask = (3 * volume / (4 * np.pi)) ** (1 / 3)
        fit = fit_sphere(tomogram, stats["centroids"][label], r_mask)
        rows.append({"label": label, "mask_radius_vox": r_mask, **fit})
    table = pd.DataFrame(rows)
    if len(table):
        table = with_nm_columns(table, voxel_size_nm, ["membrane_thickness"])
    return table
