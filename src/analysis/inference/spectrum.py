"""A tomogram's amplitude spectrum, the network's training data's, and matching one to the other.

A network learns the amplitude spectrum of its training tomograms along with their content:
how much of the image lies at each spatial frequency. Tomograms made otherwise — residual
alignment errors, another defocus, another reconstruction filter — carry the same vesicles
with a different spectrum: blurred membranes, most of all. Matching the spectrum of a tomogram
to that of the training data before inference (as MemBrain-seg offers its users for the same
reason) puts back, shell by shell of spatial frequency, the contrast the network expects.

* :func:`power_spectrum` and :func:`radial_log_amplitude` measure the spectrum of a crop (the
  domain check's ``log_amplitude``, :mod:`analysis.inference.domain`), in the bins of
  :data:`SPECTRUM_EDGES_PER_NM`;
* :func:`load_references` and :func:`select_reference` give the spectra of a network's training
  tomograms (``domain_reference.json``, written by ``benchmarks/domain_check.py reference``);
* :func:`spectrum_gains` bring the tomogram's amplitude, bin by bin, into the range of the
  training tomograms' (:func:`reference_envelope`: from their 10th to their 90th percentile),
  limited to :data:`GAIN_LIMITS` — a tomogram like the training data is left as it is; :func:`gain_weights` fits them with a
  filter made of the identity and Gaussians (:data:`SIGMAS_VOX`), which
  :func:`apply_gain_filter` applies a slab of planes at a time, so that memory-mapped volumes
  larger than memory can be filtered; :func:`match_spectrum` does all of it.

All spectra are of normalised crops at the network's voxel size, so the gains compare like
with like; the filtered volume is normalised again before inference, so only their shape
matters. Axes are (z, y, x).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from analysis.errors import ParameterError

#: Central crop, in voxels at the network's voxel size, on which the image statistics and the
#: test-time augmentation are computed (about 106 × 211 × 211 nm at 2.2 nm).
CROP_SHAPE = (48, 96, 96)


#: Radial frequency bin edges of the amplitude spectrum, cycles/nm (periods 60 nm to 5 nm).
SPECTRUM_EDGES_PER_NM = tuple(np.round(np.linspace(1 / 60, 0.2, 12), 5))


def central_crop(volume: np.ndarray, shape) -> np.ndarray:
    """The central box of ``shape`` (the whole axis where the volume is smaller), float32."""
    box = tuple(
        slice(max(0, (n - s) // 2), max(0, (n - s) // 2) + min(n, s))
        for n, s in zip(volume.shape, shape, strict=True)
    )
    return np.asarray(volume[box], dtype=np.float32)


def _abs_frequencies(shape) -> list:
    """|f| along each axis (cycles/voxel), as broadcastable arrays."""
    return [
        np.abs(np.fft.fftfreq(n)).reshape([-1 if a == i else 1 for a in range(len(shape))])
        for i, n in enumerate(shape)
    ]


def power_spectrum(volume: np.ndarray) -> np.ndarray:
    """|FFT|² of a mean-removed, Hann-windowed volume, divided by the window's energy (so
    that volumes of different sizes compare), float64 of the volume's shape."""
    v = np.asarray(volume, np.float64)
    v = v - v.mean()
    energy = 1.0
    for axis, n in enumerate(v.shape):
        w = np.hanning(n + 2)[1:-1]  # no zero weights at the ends of short axes
        energy *= float((w**2).sum())
        v = v * w.reshape([-1 if a == axis else 1 for a in range(v.ndim)])
    return np.abs(np.fft.fftn(v)) ** 2 / energy


def radial_log_amplitude(
    power: np.ndarray, voxel_size_nm: float, edges_per_nm=SPECTRUM_EDGES_PER_NM
) -> np.ndarray:
    """Mean natural-log amplitude in radial frequency bins.

    Parameters
    ----------
    power : numpy.ndarray, shape (z, y, x)
        :func:`power_spectrum`.
    voxel_size_nm : float
    edges_per_nm : sequence of float
        Bin edges in cycles/nm.

    Returns
    -------
    numpy.ndarray, shape (len(edges_per_nm) - 1,)
        NaN for bins beyond the volume's Nyquist frequency.
    """
    f = _abs_frequencies(power.shape)
    radius = (np.sqrt(sum(g**2 for g in f)) / voxel_size_nm).ravel()
    n = len(edges_per_nm) - 1
    idx = np.digitize(radius, edges_per_nm) - 1
    keep = (idx >= 0) & (idx < n)
    log_amplitude = 0.5 * np.log(power.ravel()[keep] + 1e-30)
    sums = np.bincount(idx[keep], log_amplitude, minlength=n)
    counts = np.bincount(idx[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


REFERENCE_FILE = "domain_reference.json"


def load_references(path: str | os.PathLike | None = None) -> list[dict]:
    """The reference spectra (and statistics) of the training data of known networks."""
    if path is None:
        text = resources.files("analysis.inference").joinpath(REFERENCE_FILE).read_text()
    else:
        text = Path(path).read_text()
    return json.loads(text)["references"]


def select_reference(meta: dict, references: list[dict], min_overlap: float = 0.5) -> dict | None:
    """The reference made from (mostly) the training tomograms a checkpoint records in
    ``data["train"]``: the one whose list overlaps most, if its Jaccard index reaches
    ``min_overlap`` (None otherwise: another network's training data is no reference)."""
    trained = set((meta.get("data") or {}).get("train") or [])
    best, overlap = None, 0.0
    for ref in references:
        names = set(ref["train"])
        share = len(trained & names) / max(len(trained | names), 1)
        if share > overlap:
            best, overlap = ref, share
    return best if overlap >= min_overlap else None


#: Version of the matching (bins, envelope, limits, filter basis), for caches of its results:
#: raise it with any change of the settings below or of how the filter is fitted.
MATCH_VERSION = 2
#: The training data's range per bin: from this quantile of their spectra to 1 − it. A
#: tomogram inside it is left as it is; chosen beside matching to the median (which moved
#: nominal tomograms of the generator too) on calibration data only (book: Performance).
ENVELOPE_QUANTILE = 0.1
#: Limits of the gain of one frequency bin: at most four times the tomogram's amplitude, at
#: least a quarter (noise at frequencies the tomogram has lost is not raised without end).
GAIN_LIMITS = (0.25, 4.0)
#: Widths (voxels at the network's voxel size) of the Gaussians the matching filter is made of.
SIGMAS_VOX = (0.4, 0.6, 0.9, 1.3, 2.0, 3.0, 4.5, 7.0)


def reference_envelope(
    meta: dict, references: list[dict] | None = None, quantile: float = ENVELOPE_QUANTILE
) -> tuple[np.ndarray, np.ndarray]:
    """The range of the training tomograms' log amplitude, bin by bin: their ``quantile`` and
    ``1 − quantile`` quantiles, for the network whose checkpoint metadata is ``meta``.

    Raises
    ------
    ParameterError
        When no reference records this network's training data (e.g. a network trained
        elsewhere): its spectrum is unknown.
    """
    references = load_references() if references is None else references
    ref = select_reference(meta, references)
    if ref is None:
        raise ParameterError(
            "no reference spectrum of this network's training data (domain_reference.json): "
            "matching the spectrum needs one (benchmarks/domain_check.py reference makes it)"
        )
    spectra = np.asarray(ref["log_amplitude"], np.float64)
    return (
        np.nanquantile(spectra, quantile, axis=0),
        np.nanquantile(spectra, 1.0 - quantile, axis=0),
    )


def spectrum_gains(
    log_amplitude, low, high, limits: tuple[float, float] = GAIN_LIMITS
) -> np.ndarray:
    """Gain per bin that brings ``log_amplitude`` into [``low``, ``high``] (1 where it lies
    inside, and where any of them is NaN), limited to ``limits``."""
    own = np.asarray(log_amplitude, np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.clip(own, low, high) - own
    gains = np.exp(np.clip(diff, np.log(limits[0]), np.log(limits[1])))
    return np.where(np.isfinite(diff), gains, 1.0)


def gain_curve(gains, voxel_size_nm: float, f_per_voxel, edges_per_nm=SPECTRUM_EDGES_PER_NM):
    """The gains as a function of radial frequency (cycles/voxel): linear between the bins'
    centres, constant beyond the first and the last."""
    edges = np.asarray(edges_per_nm, np.float64) * voxel_size_nm  # cycles/voxel
    centres = (edges[:-1] + edges[1:]) / 2
    return np.interp(f_per_voxel, centres, np.asarray(gains, np.float64))


def filter_response(weights, f_per_voxel, sigmas_vox=SIGMAS_VOX) -> np.ndarray:
    """Transfer function of :func:`apply_gain_filter` at radial frequencies (cycles/voxel):
    ``weights[0] + Σ weights[k] · exp(−2π² σ_k² f²)``."""
    f = np.asarray(f_per_voxel, np.float64)
    out = np.full(f.shape, float(weights[0]))
    for w, sigma in zip(weights[1:], sigmas_vox, strict=True):
        out += w * np.exp(-2 * np.pi**2 * sigma**2 * f**2)
    return out


def gain_weights(
    gains, voxel_size_nm: float, edges_per_nm=SPECTRUM_EDGES_PER_NM, sigmas_vox=SIGMAS_VOX
) -> np.ndarray:
    """Weights of the identity and each Gaussian whose :func:`filter_response` fits
    :func:`gain_curve`: least squares on radial frequencies from 0 to the corners of the
    frequency cube (√3 / 2 cycles/voxel), those beyond the axes' Nyquist frequency (0.5)
    weighted 0.3 — few voxels' worth of a tomogram lie there. Within 6 % of the gains at the
    bins' centres for smooth gain curves (tests)."""
    f = np.linspace(0.0, np.sqrt(3) / 2, 600)
    weight = np.where(f <= 0.5, 1.0, 0.3)
    basis = np.column_stack(
        [np.ones_like(f)] + [np.exp(-2 * np.pi**2 * s**2 * f**2) for s in sigmas_vox]
    )
    target = gain_curve(gains, voxel_size_nm, f, edges_per_nm)
    weights, *_ = np.linalg.lstsq(basis * weight[:, None], target * weight, rcond=None)
    return weights


def apply_gain_filter(
    volume: np.ndarray,
    weights,
    sigmas_vox=SIGMAS_VOX,
    *,
    out: np.ndarray | None = None,
    planes: int = 32,
) -> np.ndarray:
    """``weights[0] · volume + Σ weights[k] · gaussian(volume, σ_k)``, float32, computed a slab
    of ``planes`` z-planes at a time with a margin wide enough for the widest Gaussian, so that
    the result equals filtering the whole volume at once (faces: ``mode="nearest"``).

    ``volume`` may be a memory map; ``out`` (float32, the volume's shape) too.
    """
    from analysis.io.memmap import release_pages

    shape = volume.shape
    out = np.empty(shape, np.float32) if out is None else out
    margin = int(4.0 * max(sigmas_vox) + 0.5) + 1  # ndimage's kernel radius, truncate=4
    for z0 in range(0, shape[0], planes):
        z1 = min(z0 + planes, shape[0])
        lo, hi = max(0, z0 - margin), min(shape[0], z1 + margin)
        slab = np.asarray(volume[lo:hi], np.float32)
        if lo > 0 or hi < shape[0]:
            # the slab's own faces must behave as the volume's: pad beyond the true faces only
            pad = ((margin - (z0 - lo), margin - (hi - z1)), (0, 0), (0, 0))
            slab = np.pad(slab, pad, mode="edge")
            inner = slice(margin, margin + (z1 - z0))
        else:
            inner = slice(z0 - lo, z1 - lo)
        result = float(weights[0]) * slab
        for w, sigma in zip(weights[1:], sigmas_vox, strict=True):
            result += float(w) * ndimage.gaussian_filter(slab, sigma, mode="nearest")
        out[z0:z1] = result[inner]
        release_pages(volume)
        release_pages(out)
    return out


def match_spectrum(
    volume: np.ndarray,
    voxel_size_nm: float,
    envelope: tuple[np.ndarray, np.ndarray],
    *,
    centre: float,
    scale: float,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` filtered so that its spectrum comes into the training data's range.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
        At the network's voxel size (may be a memory map).
    voxel_size_nm : float
        The network's voxel size.
    envelope : (numpy.ndarray, numpy.ndarray)
        Lowest and highest log amplitude per bin of :data:`SPECTRUM_EDGES_PER_NM`
        (:func:`reference_envelope`).
    centre, scale : float
        The normalisation of ``volume`` (:func:`analysis.normalise.centre_and_scale`): the
        spectrum is measured on the normalised central crop, as the reference's were.
    out : numpy.ndarray, optional
        Float32 array of the volume's shape to write into.

    Returns
    -------
    filtered : numpy.ndarray, float32
    gains : numpy.ndarray
        The gain of each bin (:func:`spectrum_gains`).
    """
    crop = (central_crop(volume, CROP_SHAPE) - centre) / scale
    own = radial_log_amplitude(power_spectrum(crop), voxel_size_nm)
    gains = spectrum_gains(own, *envelope)
    weights = gain_weights(gains, voxel_size_nm)
    return apply_gain_filter(volume, weights, out=out), gains
