"""Training augmentation that respects cryo-ET geometry and does not let a network memorise
one renderer.

Patches are (z, y, x) with z the beam direction at zero tilt and y the tilt axis. Geometric
changes keep both: flips of any axis and a 180° turn in xy leave the missing wedge (in the
x–z plane of Fourier space) where it is, whereas a 90° turn in xy would move the tilt axis to
x, which tomograms reconstructed by IMOD, AreTomo or Warp do not have.

:data:`ROBUST` adds what robust segmentation tools use against domain shift (intensity and
Fourier augmentation): contrast and gamma, Gaussian and median smoothing, simulated lower
resolution, random amplitude-spectrum filters, a random wider missing wedge (55–88° half
range), correlated noise, and contrast inversion with matched statistics.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Augmentation levels: "physics" (flips, intensity scale/shift, white noise, blur: what the
#: first shipped network saw) and "robust" (also the Fourier and intensity augmentation above).
LEVELS = ("physics", "robust")


def geometric(arrays, rng: np.random.Generator):
    """Flip each axis with probability 1/2 (a 180° xy turn is both flips): tilt axis kept."""
    flips = rng.uniform(size=3) < 0.5
    out = []
    for a in arrays:
        for axis in np.flatnonzero(flips):
            a = np.flip(a, axis=int(axis))
        out.append(np.ascontiguousarray(a))
    return out


def _radial_frequency(shape) -> np.ndarray:
    """|k| in cycles per voxel on the ``rfftn`` grid of ``shape``."""
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    ky = np.fft.fftfreq(shape[1])[None, :, None]
    kx = np.fft.rfftfreq(shape[2])[None, None, :]
    return np.sqrt(kz**2 + ky**2 + kx**2)


def spectrum_filter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiply the amplitude spectrum by a smooth random radial gain (0.5–2 at 6 knots)."""
    k = _radial_frequency(image.shape)
    knots = np.linspace(0, np.sqrt(3) / 2, 6)
    gains = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=6))
    gains[0] = 1.0  # keep the mean
    gain = np.interp(k, knots, gains)
    return np.fft.irfftn(np.fft.rfftn(image) * gain, s=image.shape, axes=(0, 1, 2)).astype(
        np.float32
    )


def missing_wedge(image: np.ndarray, max_tilt_deg: float) -> np.ndarray:
    """Remove the Fourier components a ±``max_tilt_deg`` tilt series about y cannot reach.

    A tilt series about y samples, in the (kz, kx) plane, the directions within
    ``max_tilt_deg`` of the kx axis; the rest (the missing wedge around kz) is set to zero.
    """
    kz = np.fft.fftfreq(image.shape[0])[:, None, None]
    kx = np.fft.rfftfreq(image.shape[2])[None, None, :]
    keep = np.abs(kz) <= np.tan(np.deg2rad(max_tilt_deg)) * kx + 1e-9
    keep = np.broadcast_to(keep, (image.shape[0], image.shape[1], kx.shape[-1])).copy()
    keep[0] = True  # the kz = 0 plane is always measured
    return np.fft.irfftn(np.fft.rfftn(image) * keep, s=image.shape, axes=(0, 1, 2)).astype(
        np.float32
    )


def lower_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """Sample down by ``factor`` (with averaging) and back up: detail finer than the coarser
    voxel is lost, as in a tomogram binned more before it was resampled."""
    small = ndimage.zoom(ndimage.gaussian_filter(image, 0.4 * factor), 1 / factor, order=1)
    zoom = [n / s for n, s in zip(image.shape, small.shape, strict=True)]
    return ndimage.zoom(small, zoom, order=1).astype(np.float32)


def gamma(image: np.ndarray, value: float) -> np.ndarray:
    """Gamma on the image mapped to [0, 1] by its range, mapped back to its range."""
    lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return image
    unit = (image - lo) / (hi - lo)
    return (unit**value * (hi - lo) + lo).astype(np.float32)


def invert(image: np.ndarray) -> np.ndarray:
    """Contrast inversion with the mean and SD kept."""
    return (2 * image.mean() - image).astype(np.float32)


def correlated_noise(shape, sd: float, sigma_vox: float, rng) -> np.ndarray:
    """Gaussian noise smoothed by ``sigma_vox``, rescaled to standard deviation ``sd``."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return (noise * (sd / max(float(noise.std()), 1e-12))).astype(np.float32)


def augment(image, target, valid, rng: np.random.Generator, level: str = "physics"):
    """Augment one patch (image, target, valid), all (z, y, x).

    Parameters
    ----------
    image : numpy.ndarray, float32
    target, valid : numpy.ndarray
        Moved with the image by the geometric changes only.
    rng : numpy.random.Generator
    level : {"physics", "robust"}
        See :data:`LEVELS`.
    """
    if level not in LEVELS:
        raise ValueError(f"augmentation level must be one of {LEVELS}, not {level!r}")
    image, target, valid = geometric((image, target, valid), rng)
    return intensity(image, rng, level), target, valid


def intensity(image: np.ndarray, rng: np.random.Generator, level: str = "physics") -> np.ndarray:
    """The changes of :func:`augment` that leave voxels where they are (no flips).

    Used alone where two views of one patch must stay aligned voxel for voxel, as the
    teacher's clean view and the student's augmented view in :mod:`analysis.adapt`.
    """
    if level not in LEVELS:
        raise ValueError(f"augmentation level must be one of {LEVELS}, not {level!r}")
    if level == "robust":
        image = _robust(image, rng)
    image = image * np.float32(rng.uniform(0.8, 1.25)) + np.float32(rng.uniform(-0.15, 0.15))
    if rng.uniform() < 0.3:
        image = ndimage.gaussian_filter(image, float(rng.uniform(0.3, 1.0)))
    if rng.uniform() < 0.5:
        image = image + rng.normal(0, rng.uniform(0.02, 0.15), size=image.shape).astype(np.float32)
    return image.astype(np.float32)


def _robust(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The intensity and Fourier changes of the "robust" level, each with its own odds."""
    lo0, med0, hi0 = np.percentile(image, [1, 50, 99])
    sd = float(image.std()) or 1.0
    if rng.uniform() < 0.25:
        image = missing_wedge(image, rng.uniform(55, 88))
    if rng.uniform() < 0.3:
        image = spectrum_filter(image, rng)
    if rng.uniform() < 0.2:
        image = lower_resolution(image, rng.uniform(1.2, 2.0))
    if rng.uniform() < 0.1:
        image = ndimage.median_filter(image, size=3)
    if rng.uniform() < 0.3:
        image = gamma(image, float(np.exp(rng.uniform(np.log(0.7), np.log(1.5)))))
    if rng.uniform() < 0.3:
        image = image + correlated_noise(
            image.shape, sd * rng.uniform(0.1, 0.6), rng.uniform(0.7, 2.0), rng
        )
    if rng.uniform() < 0.1:
        image = invert(image)
    # filters change the patch's contrast: give it back its median and 1–99 % range, as the
    # per-tomogram normalisation would
    lo, med, hi = np.percentile(image, [1, 50, 99])
    return ((image - med) * ((hi0 - lo0) / max(hi - lo, 1e-6)) + med0).astype(np.float32)
