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

from analysis.errors import ParameterError

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
    #: weighting of the back-projection, see :data:`RECONSTRUCTION_FILTERS`
    recon_filter: str = "ramp"
    #: filter applied to the reconstruction, see :data:`POST_FILTERS`; strength scales it
    post_filter: str = "none"
    post_filter_strength: float = 1.0
    #: store the tomogram in this many bits (8: as byte tomograms are shared); 0 = float
    quantise_bits: int = 0
    #: residual alignment errors of the tilt series: each image shifted by a random amount
    #: (SD, nm, along y and x) and recorded at a tilt off its nominal one (SD, degrees), then
    #: reconstructed as if aligned — real series keep about 1 nm and a few tenths of a degree
    shift_error_nm: float = 0.0
    tilt_error_deg: float = 0.0

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


#: Back-projection weightings (k in cycles per voxel, 0–0.5), as reconstruction programs offer:
#: "ramp" |k| tapered by cos(πk); "radial" IMOD's radial filter, |k| up to 0.35 then a Gaussian
#: fall-off of σ 0.035; "hamming" |k| times a Hamming window; "sirt" the weighting equivalent
#: to about 20 SIRT iterations (|k| at low frequencies, flat beyond about 0.1: smoother).
RECONSTRUCTION_FILTERS = ("ramp", "radial", "hamming", "sirt")


def reconstruction_weight(k: np.ndarray, kind: str = "ramp") -> np.ndarray:
    """The back-projection weighting ``kind`` (see :data:`RECONSTRUCTION_FILTERS`) at ``k``."""
    k = np.abs(k)
    if kind == "ramp":
        return 2 * k * np.cos(np.pi * k)  # cos tapers the ramp to 0 at Nyquist
    if kind == "radial":
        return 2 * k * np.exp(-(np.clip(k - 0.35, 0, None) ** 2) / (2 * 0.035**2))
    if kind == "hamming":
        return 2 * k * (0.54 + 0.46 * np.cos(2 * np.pi * k))
    if kind == "sirt":
        # Landweber iterations act as |k|·(1 − (1 − a/|k|)^N) (Zeng 2012): a ramp at low k,
        # a plateau of about a·N beyond it
        n_iter, a = 20, 0.005
        return 2 * k * (1 - (1 - a / np.maximum(k, a)) ** n_iter)
    raise ParameterError(
        f"unknown reconstruction filter {kind!r}; use one of {RECONSTRUCTION_FILTERS}"
    )


def ramp_filter(projections: np.ndarray, kind: str = "ramp") -> np.ndarray:
    """Weight each projection row along u by :func:`reconstruction_weight` (R-weighting)."""
    n = projections.shape[-1]
    pad = int(2 ** np.ceil(np.log2(2 * n)))
    weight = reconstruction_weight(np.fft.rfftfreq(pad), kind)
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


def shift_images(images: np.ndarray, shifts_vox: np.ndarray) -> np.ndarray:
    """Shift each image (n, y, u) by its own sub-voxel (dy, du) (``shifts_vox``, (n, 2))."""
    from scipy import ndimage

    out = np.empty_like(images)
    for i, (image, shift) in enumerate(zip(images, shifts_vox, strict=True)):
        spectrum = ndimage.fourier_shift(np.fft.rfft2(image), shift, n=image.shape[-1])
        out[i] = np.fft.irfft2(spectrum, s=image.shape)
    return out


def add_noise(
    projections: np.ndarray, snr: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Add white Gaussian noise so that var(signal) / var(noise) = ``snr`` over the series.

    Returns the noisy projections and the noise standard deviation used.
    """
    sigma = float(np.sqrt(projections.var() / snr))
    noise = rng.standard_normal(projections.shape, dtype=np.float32) * sigma
    return projections + noise, sigma


def reconstruct(
    projections: np.ndarray, tilts_deg: np.ndarray, n_z: int, kind: str = "ramp"
) -> np.ndarray:
    """Weighted back-projection of a tilt series (n_tilts, y, u) into (z, y, x)."""
    return back_project(ramp_filter(projections, kind), tilts_deg, n_z)


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
    # alignment errors from a stream of their own: without them every draw is as before
    errors = np.random.default_rng([seed, 3])
    recorded = tilts + errors.normal(0, mic.tilt_error_deg, len(tilts)) * (mic.tilt_error_deg > 0)
    clean = apply_ctf(project(density, recorded), voxel_size_nm, mic)
    if mic.shift_error_nm > 0:
        shifts = errors.normal(0, mic.shift_error_nm / voxel_size_nm, (len(tilts), 2))
        clean = shift_images(clean, shifts)
    noisy, sigma = add_noise(clean, mic.snr, rng)
    tomo = reconstruct(noisy, tilts, density.shape[0], mic.recon_filter)
    tomo = lowpass(tomo, mic.lowpass_nm, voxel_size_nm)
    tomo = post_filter(tomo, mic.post_filter, mic.post_filter_strength)
    if mic.quantise_bits:
        tomo = quantise(tomo, mic.quantise_bits)
    return {"tomogram": tomo, "tilt_series": noisy, "tilts_deg": tilts, "noise_sigma": sigma}


#: Filters applied to reconstructions before segmentation: "gaussian" (σ = strength voxels),
#: "median" (a 3-voxel cube, ``strength`` times), "nad" (nonlinear anisotropic diffusion,
#: 10 × strength Perona–Malik steps, as IMOD's nad_eed_3d smooths while keeping edges).
POST_FILTERS = ("none", "gaussian", "median", "nad")


def post_filter(volume: np.ndarray, kind: str = "none", strength: float = 1.0) -> np.ndarray:
    """Filter a reconstruction (z, y, x) as users do before segmenting; see :data:`POST_FILTERS`."""
    from scipy import ndimage

    if kind == "none":
        return volume
    if kind == "gaussian":
        return ndimage.gaussian_filter(volume, strength).astype(np.float32)
    if kind == "median":
        for _ in range(max(1, round(strength))):
            volume = ndimage.median_filter(volume, size=3)
        return volume.astype(np.float32)
    if kind == "nad":
        return anisotropic_diffusion(volume, iterations=max(1, round(10 * strength)))
    raise ParameterError(f"unknown post filter {kind!r}; use one of {POST_FILTERS}")


def anisotropic_diffusion(
    volume: np.ndarray, iterations: int = 10, kappa: float = 1.0, step: float = 1 / 7
) -> np.ndarray:
    """Perona–Malik diffusion in 3-D: smooths within regions, hardly across strong edges.

    ``kappa`` is the edge threshold in SD of the volume's neighbour differences; each of the
    ``iterations`` moves every voxel by ``step`` times the sum of its six conducted fluxes.
    """
    v = np.asarray(volume, dtype=np.float32).copy()
    scale = kappa * float(np.std(np.diff(v, axis=-1))) + 1e-12
    for _ in range(iterations):
        update = np.zeros_like(v)
        for axis in range(3):
            diff = np.diff(v, axis=axis)
            flux = diff * np.exp(-((diff / scale) ** 2))
            pad_lo = [(0, 0)] * 3
            pad_hi = [(0, 0)] * 3
            pad_lo[axis] = (1, 0)
            pad_hi[axis] = (0, 1)
            update += np.pad(flux, pad_hi) - np.pad(flux, pad_lo)
        v += np.float32(step) * update
    return v


def quantise(volume: np.ndarray, bits: int = 8) -> np.ndarray:
    """Store a volume in ``bits`` bits over its 0.1–99.9 percentile range, as byte tomograms
    are made (IMOD's ``newstack -mode 0``), and return it as float32 grey levels."""
    lo, hi = np.percentile(volume[::2, ::2, ::2], [0.1, 99.9])
    levels = 2**bits - 1
    scaled = np.clip(np.rint((volume - lo) / max(hi - lo, 1e-12) * levels), 0, levels)
    return scaled.astype(np.float32)
