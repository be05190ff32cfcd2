"""Tilt-series acquisition: exit wave, astigmatic CTF, shot noise, alignment errors.

Each tilt image is formed from the projected potential φ (radians) as a 300 kV microscope
forms it, without the weak-phase linearisation: the exit wave ``exp((i - η) φ)`` (η gives the
amplitude contrast) is propagated through the objective lens (wave aberration χ with two
principal defoci and spherical aberration, an envelope ``exp(-B k² / 4)``); the image is its
squared modulus. An energy filter removes inelastically scattered electrons, so thicker paths
(at high tilt) receive fewer electrons; the dose of each tilt is split evenly over the series and
counted with Poisson statistics at the detector's DQE.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

from analysis.testsim.params import TestSimParams

#: Relativistic electron wavelength at 300 kV (nm).
WAVELENGTH_NM = 0.0019687
#: Interaction constant σ at 300 kV: phase shift per volt and nm of path (rad / (V nm)).
INTERACTION_RAD_PER_V_NM = 0.0065262


def _frequencies(shape_yu: tuple[int, int], voxel_size_nm: float):
    ky = np.fft.fftfreq(shape_yu[0], d=voxel_size_nm)[:, None]
    ku = np.fft.fftfreq(shape_yu[1], d=voxel_size_nm)[None, :]
    return ky, ku


def wave_aberration(
    shape_yu: tuple[int, int], voxel_size_nm: float, p: TestSimParams, astigmatism_angle: float
) -> np.ndarray:
    """Phase χ(k) of the objective lens (radians), on the ``fft2`` grid of a (y, u) image.

    ``χ = π λ Δf(α) k² − π Cs λ³ k⁴ / 2``, with the defocus ``Δf`` (underfocus positive)
    varying with the azimuth α of k between the two principal defoci
    ``|defocus_um| ± astigmatism_um / 2``.
    """
    ky, ku = _frequencies(shape_yu, voxel_size_nm)
    k2 = ky**2 + ku**2
    azimuth = np.arctan2(ky, ku)
    underfocus_nm = -p.defocus_um * 1e3 + 0.5 * p.astigmatism_um * 1e3 * np.cos(
        2 * (azimuth - astigmatism_angle)
    )
    cs_nm = p.spherical_aberration_mm * 1e6
    lam = WAVELENGTH_NM
    return np.pi * lam * underfocus_nm * k2 - 0.5 * np.pi * cs_nm * lam**3 * k2**2


def lens_transfer(
    shape_yu: tuple[int, int], voxel_size_nm: float, p: TestSimParams, astigmatism_angle: float
) -> np.ndarray:
    """Complex transfer of the objective lens for the exit wave: ``exp(iχ) exp(-B k² / 4)``.

    With this sign a phase object (mass) comes out dark at low frequencies in underfocus.
    """
    ky, ku = _frequencies(shape_yu, voxel_size_nm)
    envelope = np.exp(-p.bfactor_nm2 * (ky**2 + ku**2) / 4)
    chi = wave_aberration(shape_yu, voxel_size_nm, p, astigmatism_angle)
    return (np.exp(1j * chi) * envelope).astype(np.complex64)


def image_intensity(
    phase: np.ndarray, voxel_size_nm: float, p: TestSimParams, astigmatism_angle: float
) -> np.ndarray:
    """Bright-field intensity (1 = unscattered beam) of phase images (n, y, u), radians."""
    eta = p.amplitude_contrast / np.sqrt(1 - p.amplitude_contrast**2)
    wave = np.exp((1j - eta) * phase.astype(np.complex64))
    transfer = lens_transfer(phase.shape[1:], voxel_size_nm, p, astigmatism_angle)
    image = fft.ifft2(fft.fft2(wave, axes=(-2, -1)) * transfer, axes=(-2, -1))
    return (image.real**2 + image.imag**2).astype(np.float32)


def electrons_per_pixel(p: TestSimParams, tilts_deg: np.ndarray) -> np.ndarray:
    """Expected electrons counted per pixel of an empty area at each tilt (zero-loss only)."""
    per_tilt = p.dose_e_per_A2 / len(tilts_deg)
    pixel_A2 = (10 * p.voxel_size_nm) ** 2
    thickness_nm = p.shape[0] * p.voxel_size_nm
    zero_loss = np.exp(-thickness_nm / (p.inelastic_mfp_nm * np.cos(np.deg2rad(tilts_deg))))
    return per_tilt * pixel_A2 * p.detector_dqe * zero_loss


def fourier_shift(images: np.ndarray, shifts_vox: np.ndarray) -> np.ndarray:
    """Shift each image (n, y, u) by (dy, du) voxels (n, 2), periodically, by a phase ramp."""
    ky = np.fft.fftfreq(images.shape[1])[None, :, None]
    ku = np.fft.rfftfreq(images.shape[2])[None, None, :]
    ramp = np.exp(
        -2j * np.pi * (ky * shifts_vox[:, 0, None, None] + ku * shifts_vox[:, 1, None, None])
    )
    spec = fft.rfft2(images, axes=(-2, -1)) * ramp
    return fft.irfft2(spec, s=images.shape[1:], axes=(-2, -1)).astype(np.float32)


def record_tilt_series(
    projected_v_vox: np.ndarray,
    p: TestSimParams,
    tilts_deg: np.ndarray,
    rng: np.random.Generator,
    *,
    noise: bool = True,
) -> np.ndarray:
    """Turn projected potentials into normalised tilt images.

    Parameters
    ----------
    projected_v_vox : numpy.ndarray, shape (n_tilts, y, u)
        Line integrals of the potential (volts times voxel lengths).
    p : TestSimParams
    tilts_deg : numpy.ndarray
        The true tilt angles, for the path length through the specimen.
    rng : numpy.random.Generator
        Astigmatism direction, shot noise and alignment errors.
    noise : bool
        False gives the expected image (infinite dose), with the same alignment errors.

    Returns
    -------
    numpy.ndarray, shape (n_tilts, y, u), float32
        Each image divided by its mean, minus 1: mass is negative (dark).
    """
    astigmatism_angle = rng.uniform(0, np.pi)
    phase = INTERACTION_RAD_PER_V_NM * p.voxel_size_nm * projected_v_vox
    intensity = image_intensity(phase, p.voxel_size_nm, p, astigmatism_angle)
    counts_scale = electrons_per_pixel(p, tilts_deg)[:, None, None]
    shot_seed = rng.integers(2**63)
    if noise:
        counts = np.random.default_rng(shot_seed).poisson(intensity * counts_scale)
        counts = counts.astype(np.float32)
    else:
        counts = intensity * counts_scale
    images = counts / counts.mean(axis=(1, 2), keepdims=True) - 1
    jitter = rng.standard_normal((len(tilts_deg), 2)) * p.vox(p.shift_jitter_nm)
    return fourier_shift(images.astype(np.float32), jitter)
