"""Fourier-shear projection and filtered back-projection about the y axis.

Geometry (the project's convention): the tilt axis is y, the beam runs along z at 0°, and the
ray at tilt θ that reaches detector position u is the line ``x cos θ + z sin θ = u`` in the
(z, x) plane of every y row (centred coordinates, in voxels). Hence the missing wedge of a
limited tilt range lies in the (kz, kx) plane.

Unlike a ray tracer with linear interpolation, both operators here interpolate with the
band-limited (trigonometric) interpolant: a projection is a sum over z planes of rows sheared by
``z tan θ`` and magnified by ``1 / cos θ``; a shear is a phase ramp on each row's Fourier
transform, so both steps are matrix products with complex exponentials, batched over tilts.
The specimen is taken as periodic in x (a slab that continues beyond the box rather than one
that ends in vacuum); rays therefore never leave the specimen through its side faces.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

#: Reconstruction filters of :func:`filter_weights`.
RECON_FILTERS = ("ramp", "shepp-logan", "hann", "sirt")


def _centred(n: int) -> np.ndarray:
    return np.arange(n) - (n - 1) / 2


def _half_spectrum_weights(n: int) -> np.ndarray:
    """Weights that turn a sum over rfft frequencies 0..n//2 into the real trigonometric
    interpolant: 1 for the mean, 2 for the rest, 0 for an even length's Nyquist term (its
    interpolant at non-integer points is ambiguous)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 0.0
    return w


def project(volume: np.ndarray, tilts_deg: np.ndarray) -> np.ndarray:
    """Parallel-beam line integrals of a (z, y, x) volume about the y axis.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
        Density, taken as periodic along x.
    tilts_deg : array_like, shape (n_tilts,)
        Tilt angles in degrees, each in (-90, 90).

    Returns
    -------
    numpy.ndarray, shape (n_tilts, y, x), float32
        Line integrals in voxel lengths; detector pixel ``j`` sits at ``u = j - (x - 1) / 2``.
    """
    nz, ny, nx = volume.shape
    theta = np.deg2rad(np.asarray(tilts_deg, dtype=float))
    k = np.arange(nx // 2 + 1)
    spec = fft.rfft(np.asarray(volume, dtype=np.float32), axis=2)  # (z, y, k)
    # shear: plane z moves by -z tan θ along x, a phase ramp per frequency
    shear = np.exp(
        -2j * np.pi * k[:, None, None] * _centred(nz)[None, :, None] * np.tan(theta) / nx
    ).astype(np.complex64)  # (k, z, t)
    sheared = np.matmul(spec.transpose(2, 1, 0), shear)  # (k, y, t): sum over z
    # magnify: detector u samples the sheared sum at x = u / cos θ; the path per plane is
    # 1 / cos θ voxels
    x_at_u = _centred(nx)[None, :] / np.cos(theta)[:, None] + (nx - 1) / 2  # (t, u)
    out = _resample_rows(sheared.transpose(2, 1, 0), nx, x_at_u)  # (t, y, u)
    return np.ascontiguousarray(out / np.cos(theta)[:, None, None], dtype=np.float32)


def filter_weights(n: int, kind: str = "ramp", sirt_iterations: int = 15) -> np.ndarray:
    """Weights of a reconstruction filter at the rfft frequencies of a length-``n`` signal.

    Parameters
    ----------
    n : int
        Length of the (zero-padded) detector rows.
    kind : {"ramp", "shepp-logan", "hann", "sirt"}
        ``ramp``: ``|f|`` (Ram-Lak); ``shepp-logan``: ramp times ``sinc(f)``; ``hann``: ramp
        times a raised cosine falling to 0 at Nyquist; ``sirt``: the filter that makes
        back-projection behave like ``sirt_iterations`` Landweber (SIRT) iterations: the ramp
        at low frequencies, flat above about ``sirt_iterations / n`` cycles per pixel.
    sirt_iterations : int
        Iterations mimicked by ``kind="sirt"``.

    Returns
    -------
    numpy.ndarray, shape (n // 2 + 1,)
        Weights for frequencies ``f = k / n`` cycles per pixel, ``k = 0 .. n // 2``.
    """
    f = np.arange(n // 2 + 1) / n
    ramp = np.abs(f)
    if kind == "ramp":
        return ramp
    if kind == "shepp-logan":
        return ramp * np.sinc(f)
    if kind == "hann":
        return ramp * 0.5 * (1 + np.cos(2 * np.pi * f))
    if kind == "sirt":
        # back-projecting projections has transfer ~ 1/|f|; Landweber after N steps with a step
        # that keeps the lowest frequency stable passes 1 - (1 - f0/|f|)^N of the ramp
        f0 = 1.0 / n
        eigen = np.minimum(f0 / np.maximum(ramp, f0), 1.0)
        return ramp * (1 - (1 - eigen) ** sirt_iterations)
    raise ValueError(f"recon_filter must be one of {RECON_FILTERS}, not {kind!r}")


def back_project(
    projections: np.ndarray,
    tilts_deg: np.ndarray,
    n_z: int,
    recon_filter: str = "ramp",
    sirt_iterations: int = 15,
) -> np.ndarray:
    """Filtered back-projection of a tilt series into a (z, y, x) volume.

    Parameters
    ----------
    projections : numpy.ndarray, shape (n_tilts, y, u)
        Tilt images with detector pixel ``j`` at ``u = j - (u - 1) / 2``.
    tilts_deg : array_like, shape (n_tilts,)
        Tilt angles assumed for the reconstruction, degrees.
    n_z : int
        Thickness of the reconstruction in voxels; its width is ``u``.
    recon_filter, sirt_iterations
        See :func:`filter_weights`.

    Returns
    -------
    numpy.ndarray, shape (n_z, y, u), float32
        With the ramp filter and a full tilt range, the density that made the projections.
    """
    n_t, ny, nu = projections.shape
    theta = np.deg2rad(np.asarray(tilts_deg, dtype=float))
    step = float(np.mean(np.diff(np.sort(theta)))) if n_t > 1 else np.pi
    pad = fft.next_fast_len(2 * nu)  # zero padding: the filter's response does not wrap
    spec = fft.rfft(np.asarray(projections, dtype=np.float32), n=pad, axis=2)
    spec *= filter_weights(pad, recon_filter, sirt_iterations).astype(np.float32)
    # q(x cos θ + z sin θ) = r(x + z tan θ) with r(s) = q(s cos θ): sample r on a grid wide
    # enough for every (z, x) of the output, plus a tapered guard against wrap-around
    reach = int(np.ceil((n_z - 1) / 2 * np.max(np.abs(np.tan(theta)))))
    guard = 16
    n_s = fft.next_fast_len(nu + 2 * (reach + guard))
    start = (n_s - nu) // 2  # output pixel j is grid point start + j
    sigma = np.arange(n_s) - start - (nu - 1) / 2  # centred x of each grid point
    r = _resample_rows(spec, pad, sigma[None, :] * np.cos(theta)[:, None] + (nu - 1) / 2)
    taper = np.ones(n_s, dtype=np.float32)
    taper[:guard] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(guard) + 0.5) / guard)
    taper[-guard:] = taper[:guard][::-1]
    r_spec = fft.rfft(r * taper, axis=2)  # (t, y, k')
    # plane z takes r shifted by z tan θ: a phase ramp, summed over tilts by a matrix product
    k2 = np.arange(n_s // 2 + 1)[:, None, None]
    shear = np.tan(theta)[None, :, None] * _centred(n_z)[None, None, :]
    shift = np.exp(2j * np.pi * k2 * shear / n_s).astype(np.complex64)  # (k', t, z)
    vol_spec = np.matmul(r_spec.transpose(2, 1, 0), shift)  # (k', y, z)
    vol = fft.irfft(vol_spec.transpose(2, 1, 0), n=n_s, axis=2)  # (z, y, s)
    vol = vol[:, :, start : start + nu] * step
    return np.ascontiguousarray(vol, dtype=np.float32)


def _resample_rows(spec: np.ndarray, n: int, positions: np.ndarray) -> np.ndarray:
    """Trigonometric interpolation of rows given by their rfft ``spec`` (t, y, n // 2 + 1) at
    ``positions`` (t, s), in pixels of the length-``n`` rows; returns (t, y, s) float32."""
    k = np.arange(n // 2 + 1)
    weights = _half_spectrum_weights(n)[None, :, None] / n
    basis = weights * np.exp(2j * np.pi * k[None, :, None] * positions[:, None, :] / n)
    return np.matmul(spec, basis.astype(np.complex64)).real.astype(np.float32)
