"""Random fields and particle splatting, built in Fourier space.

Everything here works on a grid padded on every side so that the circular convolutions of the
FFT never carry density from one face of the volume to the opposite one.
"""

from __future__ import annotations

import numpy as np
from scipy import fft


def spatial_frequencies(shape: tuple[int, ...], voxel_size_nm: float) -> np.ndarray:
    """|k| in cycles per nm on the rfftn grid of ``shape``.

    Returns
    -------
    numpy.ndarray, shape of ``fft.rfftn`` of ``shape``
    """
    axes = [np.fft.fftfreq(n, d=voxel_size_nm) for n in shape[:-1]]
    axes.append(np.fft.rfftfreq(shape[-1], d=voxel_size_nm))
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def ball_transform(k: np.ndarray, radius_nm: float, edge_nm: float) -> np.ndarray:
    """Fourier transform of a ball of unit density and ``radius_nm``, its edge blurred by a
    Gaussian of ``edge_nm``; normalised to the ball's volume in nm³ at k = 0."""
    x = 2 * np.pi * k * radius_nm
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = np.where(x > 1e-6, 3 * (np.sin(x) - x * np.cos(x)) / x**3, 1.0)
    volume = 4 / 3 * np.pi * radius_nm**3
    return volume * shape * np.exp(-2 * (np.pi * k * edge_nm) ** 2)


def gaussian_transform(k: np.ndarray, sigma_nm: float) -> np.ndarray:
    """Fourier transform of a normalised 3-D Gaussian of standard deviation ``sigma_nm``."""
    return np.exp(-2 * (np.pi * k * sigma_nm) ** 2)


class FourierCanvas:
    """A padded grid on which densities are summed in Fourier space, then cropped.

    Parameters
    ----------
    shape : tuple of int
        (z, y, x) of the volume wanted.
    voxel_size_nm : float
    pad_vox : int
        Padding on each side, at least the reach of the widest kernel.
    """

    def __init__(self, shape: tuple[int, int, int], voxel_size_nm: float, pad_vox: int):
        self.shape = tuple(int(n) for n in shape)
        self.voxel_size_nm = voxel_size_nm
        self.pad = int(pad_vox)
        self.padded = tuple(fft.next_fast_len(n + 2 * self.pad, real=True) for n in self.shape)
        self.k = spatial_frequencies(self.padded, voxel_size_nm)
        self.spectrum = np.zeros(self.k.shape, dtype=np.complex64)

    def impulses(self, points_vox: np.ndarray, weights: np.ndarray | float = 1.0) -> np.ndarray:
        """Spectrum of unit impulses at the voxels nearest ``points_vox`` (n, 3); points
        outside the padded grid are dropped."""
        points = np.rint(np.asarray(points_vox, dtype=float).reshape(-1, 3)).astype(int) + self.pad
        weights = np.broadcast_to(np.asarray(weights, dtype=float), (len(points),))
        inside = np.all((points >= 0) & (points < np.asarray(self.padded)), axis=1)
        flat = np.ravel_multi_index(points[inside].T, self.padded)
        grid = np.bincount(flat, weights=weights[inside], minlength=int(np.prod(self.padded)))
        return fft.rfftn(grid.reshape(self.padded).astype(np.float32))

    def add(self, spectrum: np.ndarray) -> None:
        """Add a spectrum (e.g. impulses times a kernel transform) to the canvas."""
        self.spectrum += spectrum.astype(np.complex64)

    def add_white_noise(self, transfer: np.ndarray, rng: np.random.Generator) -> None:
        """Add white Gaussian noise shaped by ``transfer`` (same layout as the spectrum)."""
        noise = rng.standard_normal(self.padded, dtype=np.float32)
        self.spectrum += (fft.rfftn(noise) * transfer).astype(np.complex64)

    def volume(self) -> np.ndarray:
        """The summed density, cropped to ``shape``, float32."""
        full = fft.irfftn(self.spectrum, s=self.padded)
        crop = tuple(slice(self.pad, self.pad + n) for n in self.shape)
        return np.ascontiguousarray(full[crop], dtype=np.float32)


def correlated_field(
    shape: tuple[int, int, int],
    voxel_size_nm: float,
    correlation_nm: float,
    exponent: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A Gaussian random field with a power-law spectrum, zero mean and unit variance.

    The power spectrum is ``(k² + k0²) ** (-exponent / 2)`` with ``k0 = 1 / correlation_nm``:
    flat on scales larger than ``correlation_nm``, falling as a power law below it (real
    cytoplasm has structure on every scale from single proteins to organelles).

    Parameters
    ----------
    shape : tuple of int
        (z, y, x).
    voxel_size_nm : float
    correlation_nm : float
        Length above which the field is uncorrelated.
    exponent : float
        Power-law exponent of the spectrum (about 2-4).
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray, shape ``shape``, float32
    """
    canvas = FourierCanvas(shape, voxel_size_nm, pad_vox=0)
    k0 = 1.0 / correlation_nm
    amplitude = (canvas.k**2 + k0**2) ** (-exponent / 4)
    amplitude.flat[0] = 0.0
    canvas.add_white_noise(amplitude, rng)
    field = canvas.volume()
    return ((field - field.mean()) / (field.std() or 1.0)).astype(np.float32)
