"""Image a phantom as a cryo-electron microscope would, and reconstruct it.

The density is projected into a tilt series (tilt axis y, default ±60° in 2° steps), each
projection is filtered by the contrast transfer function (CTF) of a 300 kV microscope at large
defocus, noise is added to a target signal-to-noise ratio, and the volume is reconstructed by
weighted (ramp-filtered) back-projection. The directions the microscope cannot reach leave the
*missing wedge* in Fourier space, which elongates and blurs everything along z as in real data.

Projection and back-projection work on the (z, x) plane of every y row at once: a ray at tilt
θ through detector position u crosses plane z at x = (u − z·sin θ)/cos θ, so both reduce to
linear interpolation along x, exact for a parallel beam through a slab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ELECTRON_WAVELENGTH_300KV_NM = 0.001969


@dataclass
class Microscope:
    """Acquisition and reconstruction parameters (lengths in nm unless named otherwise)."""

    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 2.0
    defocus_um: float = -8.0  # negative = underfocus, as reported by CTF programs
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.07
    bfactor_nm2: float = 1.5  # envelope exp(-B k² / 4), damping high frequencies
    #: signal-to-noise ratio (variance ratio) of each tilt image
    snr: float = 0.5
    #: optional Gaussian low-pass of the reconstruction (nm, as a resolution); 0 = none
    lowpass_nm: float = 0.0

    @property
    def tilts_deg(self) -> np.ndarray:
        n = int(round((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg)) + 1
        return np.linspace(self.tilt_min_deg, self.tilt_max_deg, n)


def ctf_2d(shape_yx: tuple[int, int], voxel_size_nm: float, mic: Microscope) -> np.ndarray:
    """CTF of one projection (y, u) in the layout of ``numpy.fft.rfft2``.

    Sign convention: mass (positive density) comes out dark at low frequencies in underfocus.
    """
    ky = np.fft.fftfreq(shape_yx[0], d=voxel_size_nm)[:, None]
    kx = np.fft.rfftfreq(shape_yx[1], d=voxel_size_nm)[None, :]
    k2 = ky**2 + kx**2
    lam = ELECTRON_WAVELENGTH_300KV_NM
    dz = -mic.defocus_um * 1e3  # underfocus positive, nm
    cs = mic.spherical_aberration_mm * 1e6
    chi = np.pi * lam * dz * k2 - 0.5 * np.pi * cs * lam**3 * k2**2
    a = mic.amplitude_contrast
    ctf = -(np.sqrt(1 - a**2) * np.sin(chi) + a * np.cos(chi))
    return (ctf * np.exp(-mic.bfactor_nm2 * k2 / 4)).astype(np.float32)


def _lerp(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Sample ``values`` (y, r, n) along its last axis at ``positions`` (p, m); 0 outside.

    With r == p, row i of ``positions`` samples row i of ``values`` (projection: each z plane
    at its own x); with r == 1 every row samples the one row (back-projection).
    """
    n = values.shape[-1]
    rows = np.arange(positions.shape[0])[:, None] if values.shape[1] > 1 else 0
    left = np.floor(positions).astype(np.int64)
    frac = (positions - left).astype(np.float32)
    w_left = (1 - frac) * ((left >= 0) & (left < n))
    w_right = frac * ((left + 1 >= 0) & (left + 1 < n))
    lc = np.clip(left, 0, n - 1)
    rc = np.clip(left + 1, 0, n - 1)
    return values[:, rows, lc] * w_left + values[:, rows, rc] * w_right


def project(density: np.ndarray, tilts_deg: np.ndarray) -> np.ndarray:
    """Parallel-beam projections of a (z, y, x) volume about the y axis.

    Returns
    -------
    numpy.ndarray, shape (n_tilts, y, x), float32
        Line integrals in voxel units.
    """
    nz, ny, nx = density.shape
    out = np.empty((len(tilts_deg), ny, nx), dtype=np.float32)
    slab = np.ascontiguousarray(density.transpose(1, 0, 2))  # (y, z, x)
    z = np.arange(nz) - (nz - 1) / 2
    u = np.arange(nx) - (nx - 1) / 2
    for i, t in enumerate(np.deg2rad(tilts_deg)):
        # the ray to detector u crosses plane z at x = (u - z sin t) / cos t
        x = (u[None, :] - z[:, None] * np.sin(t)) / np.cos(t) + (nx - 1) / 2
        out[i] = _lerp(slab, x).sum(axis=1) / np.cos(t)
    return out


def ramp_filter(projections: np.ndarray) -> np.ndarray:
    """Weight each projection row by |k| along u (R-weighting), with a cosine apodisation."""
    n = projections.shape[-1]
    pad = int(2 ** np.ceil(np.log2(2 * n)))
    k = np.fft.rfftfreq(pad)
    weight = 2 * np.abs(k) * np.cos(np.pi * k)  # cos tapers the ramp to 0 at Nyquist
    spec = np.fft.rfft(projections, n=pad, axis=-1) * weight
    return np.fft.irfft(spec, n=pad, axis=-1)[..., :n].astype(np.float32)


def back_project(filtered: np.ndarray, tilts_deg: np.ndarray, n_z: int) -> np.ndarray:
    """Back-project ramp-filtered projections (n_tilts, y, u) into a (z, y, x) volume."""
    n_t, ny, nx = filtered.shape
    vol = np.zeros((ny, n_z, nx), dtype=np.float32)
    z = np.arange(n_z) - (n_z - 1) / 2
    x = np.arange(nx) - (nx - 1) / 2
    for i, t in enumerate(np.deg2rad(tilts_deg)):
        u = x[None, :] * np.cos(t) + z[:, None] * np.sin(t) + (nx - 1) / 2  # (z, x)
        vol += _lerp(filtered[i][:, None, :], u)
    vol *= np.pi / (2 * n_t)
    return np.ascontiguousarray(vol.transpose(1, 0, 2))


def apply_ctf(projections: np.ndarray, voxel_size_nm: float, mic: Microscope) -> np.ndarray:
    """Filter each projection (y, u) by the CTF: mass becomes dark, as in cryo-EM images."""
    ctf = ctf_2d(projections.shape[1:], voxel_size_nm, mic)
    spec = np.fft.rfft2(projections, axes=(-2, -1)) * ctf
    return np.fft.irfft2(spec, s=projections.shape[1:], axes=(-2, -1)).astype(np.float32)


def add_noise(
    projections: np.ndarray, snr: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Add white Gaussian noise so that var(signal) / var(noise) = ``snr`` over the series.

    Returns the noisy projections and the noise standard deviation used.
    """
    sigma = float(np.sqrt(projections.var() / snr))
    noise = rng.standard_normal(projections.shape, dtype=np.float32) * sigma
    return projections + noise, sigma


def reconstruct(projections: np.ndarray, tilts_deg: np.ndarray, n_z: int) -> np.ndarray:
    """Weighted back-projection of a tilt series (n_tilts, y, u) into (z, y, x)."""
    return back_project(ramp_filter(projections), tilts_deg, n_z)


def lowpass(volume: np.ndarray, resolution_nm: float, voxel_size_nm: float) -> np.ndarray:
    """Gaussian low-pass whose response falls to 1/2 at 1/``resolution_nm``."""
    from scipy import ndimage

    if resolution_nm <= 0:
        return volume
    # Gaussian transfer exp(-2 pi^2 s^2 k^2) = 1/2 at k = 1/res  ->  s = res * sqrt(ln2/2) / pi
    sigma_vox = resolution_nm * np.sqrt(np.log(2) / 2) / np.pi / voxel_size_nm
    return ndimage.gaussian_filter(volume, sigma_vox).astype(np.float32)


def image_phantom(
    density: np.ndarray, voxel_size_nm: float, mic: Microscope | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Tilt series, noise and reconstruction of a density (z, y, x).

    Returns
    -------
    dict
        ``tomogram`` (float32, z, y, x: the reconstruction, mass dark), ``tilt_series``
        (n_tilts, y, x: noisy CTF-filtered projections), ``tilts_deg`` and ``noise_sigma``.
    """
    mic = mic or Microscope()
    rng = np.random.default_rng(seed)
    tilts = mic.tilts_deg
    clean = apply_ctf(project(density, tilts), voxel_size_nm, mic)
    noisy, sigma = add_noise(clean, mic.snr, rng)
    tomo = reconstruct(noisy, tilts, density.shape[0])
    tomo = lowpass(tomo, mic.lowpass_nm, voxel_size_nm)
    return {"tomogram": tomo, "tilt_series": noisy, "tilts_deg": tilts, "noise_sigma": sigma}
