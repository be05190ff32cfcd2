"""A tomogram's amplitude spectrum, the network's training data's, and matching one to the other.

A network learns the amplitude spectrum of its training tomograms along with their content:
how much of the image lies at each spatial frequency. Tomograms made otherwise — residual
alignment errors, another defocus, another reconstruction filter — carry the same vesicles
with a different spectrum: blurred membranes, most of all. Matching the spectrum of a tomogram
to that of the training data before inference (as MemBrain-seg offers its users for the same
reason) puts back, shell by shell of spatial frequency, the contrast the network expects.

* :func:`power_spectrum` and :func:`radial_log_amplitude` measure the spectrum of a crop (the
  domain check's ``log_amplitude``, :mod:`analysis.inference.domain`), in the bins of
  :data:`SPECTRUM_EDGES_PER_NM`; matching follows the mean over a grid of crops
  (:data:`GRID_POSITIONS`, :func:`grid_log_amplitude`), which describes the whole tomogram;
* :func:`load_references` and :func:`select_reference` give the spectra of a network's training
  tomograms (``domain_reference.json``, written by ``benchmarks/domain_check.py reference``);
* :func:`spectrum_gains` bring the tomogram's amplitude, bin by bin, into the range of the
  training tomograms' (:func:`reference_envelope`: from their 10th to their 90th percentile),
  limited to :data:`GAIN_LIMITS` — a tomogram like the training data is left as it is;
* :func:`gain_weights` fits the gains with a filter made of the identity and Gaussians
  (:data:`SIGMAS_VOX`) — the filter as applied, sampled and truncated kernels in a cascade, so
  that :func:`filter_response` is its exact transfer function (tests, with an impulse);
* :func:`apply_gain_filter` applies it a slab of planes at a time, so that memory-mapped
  volumes larger than memory can be filtered; :func:`matching_filter` and
  :func:`match_spectrum` do all of it;
* :func:`matching_envelope` says what ``match_spectrum`` (True, False or ``"auto"``: on where
  the network's training spectra are known) means for a network.

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

from analysis.errors import ParameterError

#: Central crop, in voxels at the network's voxel size, on which the image statistics and the
#: test-time augmentation are computed (about 106 × 211 × 211 nm at 2.2 nm).
CROP_SHAPE = (48, 96, 96)


#: Radial frequency bin edges of the amplitude spectrum, cycles/nm (periods 60 nm to 5 nm).
SPECTRUM_EDGES_PER_NM = tuple(np.round(np.linspace(1 / 60, 0.2, 12), 5))


def crop_box(volume_shape, shape, fractions=(0.5, 0.5, 0.5)) -> tuple[slice, ...]:
    """The box of ``shape`` placed at ``fractions`` of the free range along each axis (0: at
    the start, 0.5: central, 1: at the end); the whole axis where the volume is smaller."""
    return tuple(
        slice(int(f * max(0, n - s)), int(f * max(0, n - s)) + min(n, s))
        for n, s, f in zip(volume_shape, shape, fractions, strict=True)
    )


def central_crop(volume: np.ndarray, shape) -> np.ndarray:
    """The central box of ``shape`` (the whole axis where the volume is smaller), float32."""
    return np.asarray(volume[crop_box(volume.shape, shape)], dtype=np.float32)


#: Where the spectrum that matching follows is measured: crops of :data:`CROP_SHAPE`, central
#: in z, at these fractions (of the free range) along y and x. One central crop follows what it
#: holds: that of a full-size tomogram may be all cytoplasm, with less coarse contrast than
#: any training tomogram's, though it was imaged alike (book: Performance).
GRID_POSITIONS = tuple((0.5, fy, fx) for fy in (0.2, 0.5, 0.8) for fx in (0.2, 0.5, 0.8))


def grid_crops(volume: np.ndarray, shape=CROP_SHAPE) -> list[np.ndarray]:
    """The crops of ``shape`` at :data:`GRID_POSITIONS` (float32, not normalised): only they
    are read from a memory-mapped ``volume``."""
    return [
        np.asarray(volume[crop_box(volume.shape, shape, at)], np.float32) for at in GRID_POSITIONS
    ]


def grid_log_amplitude(crops, voxel_size_nm: float) -> np.ndarray:
    """:func:`radial_log_amplitude` of the mean :func:`power_spectrum` of crops of one shape
    (normalised, at the network's voxel size; e.g. at :data:`GRID_POSITIONS`)."""
    power = np.mean([power_spectrum(crop) for crop in crops], axis=0)
    return radial_log_amplitude(power, voxel_size_nm)


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
MATCH_VERSION = 4
#: The training data's range per bin: from this quantile of their spectra to 1 − it. A
#: tomogram inside it is left as it is; chosen beside matching to the median (which moved
#: nominal tomograms of the generator too) on calibration data only (book: Performance).
ENVELOPE_QUANTILE = 0.1
#: Limits of the gain of one frequency bin: at most four times the tomogram's amplitude, at
#: least a quarter (noise at frequencies the tomogram has lost is not raised without end).
GAIN_LIMITS = (0.25, 4.0)
#: Widths (voxels at the network's voxel size) of the Gaussians the matching filter is made of.
SIGMAS_VOX = (0.4, 0.6, 0.9, 1.3, 2.0, 3.0, 4.5, 7.0)
#: Truncation of the Gaussian kernels, in σ (scipy's default, 4, costs a third more taps; the
#: fit takes the truncated kernels as they are).
TRUNCATE = 3.0
#: Ridge on the Gaussians' weights in the fit, relative to the weighted squared error.
RIDGE = 1e-6
#: Side of the grid of frequencies the filter is fitted on.
_FIT_GRID = 40
#: Bytes of one slab of :func:`apply_gain_filter` with its margins (three float32 arrays of
#: it are held at once).
SLAB_BYTES = 256 * 1024**2


def reference_envelope(
    meta: dict, references: list[dict] | None = None, quantile: float = ENVELOPE_QUANTILE
) -> tuple[np.ndarray, np.ndarray]:
    """The range of the training tomograms' log amplitude over a grid of crops
    (:func:`grid_log_amplitude`), bin by bin: their ``quantile`` and ``1 − quantile``
    quantiles, for the network whose checkpoint metadata is ``meta``.

    Raises
    ------
    ParameterError
        When no reference records this network's training data (e.g. a network trained
        elsewhere): its spectrum is unknown; or when the reference predates the grid.
    """
    references = load_references() if references is None else references
    ref = select_reference(meta, references)
    if ref is None:
        raise ParameterError(
            "no reference spectrum of this network's training data (domain_reference.json): "
            "matching the spectrum needs one (benchmarks/domain_check.py reference makes it)"
        )
    if "grid_log_amplitude" not in ref:
        raise ParameterError(
            f"the reference {ref['name']!r} (domain_reference.json) predates spectra over a "
            "grid of crops: make it again (benchmarks/domain_check.py reference) to match to it"
        )
    spectra = np.asarray(ref["grid_log_amplitude"], np.float64)
    return (
        np.nanquantile(spectra, quantile, axis=0),
        np.nanquantile(spectra, 1.0 - quantile, axis=0),
    )


#: The values ``match_spectrum`` takes: on, off, or on where the network's training spectra are
#: known (:func:`matching_envelope`).
MATCH_SETTINGS = (True, False, "auto")
#: ``predict``'s, ``segment_file``'s and the domain check's default: on where the network's
#: training spectra are known and span a range (the shipped 3-D network), off otherwise. Made
#: the default once with one central crop's spectrum, it added false vesicles to the full-size
#: nominal tomogram; measured over :data:`GRID_POSITIONS` it does not (book: Performance).
DEFAULT_MATCH: bool | str = "auto"
#: ``"auto"`` matches only to the range of a varied training set, of at least this many
#: tomograms: six alike ones (the first network's, and the 2-D network's) give the range of one
#: imaging condition, and matching to it cost the first network most rows of the independent
#: simulator (book: Performance). ``True`` matches to any recorded reference.
AUTO_MIN_TRAINING_TOMOGRAMS = 50


def matching_envelope(
    meta: dict, setting: bool | str, references: list[dict] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """What ``match_spectrum=setting`` means for the network whose checkpoint metadata is
    ``meta``: the envelope to match to (:func:`reference_envelope`), or None for no matching.

    ``True`` needs the network's training spectra (ParameterError without them), ``False``
    is no matching, ``"auto"`` matches where the spectra are known and come from a varied
    training set (:data:`AUTO_MIN_TRAINING_TOMOGRAMS` tomograms or more: the shipped 3-D
    network), and not otherwise (a network trained elsewhere, e.g. CryoVesNet's, one adapted
    or fine-tuned on other tomograms, or one trained on a few alike tomograms). A reference
    made before the grid of crops (no ``grid_log_amplitude``) is not matched to under
    ``"auto"``, and refused under ``True``.
    """
    if setting is True:
        return reference_envelope(meta, references)
    if setting is False:
        return None
    if setting != "auto":
        raise ParameterError(f"match_spectrum must be True, False or 'auto', not {setting!r}")
    references = load_references() if references is None else references
    ref = select_reference(meta, references)
    if ref is None or len(ref["log_amplitude"]) < AUTO_MIN_TRAINING_TOMOGRAMS:
        return None
    if "grid_log_amplitude" not in ref:  # an old reference: matched only when asked for
        return None
    return reference_envelope(meta, references)


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


def _cascade_steps(sigmas_vox) -> list[float]:
    """Widths of the Gaussians that, applied one after another, give each of ``sigmas_vox``
    in turn (variances add)."""
    steps, previous = [], 0.0
    for sigma in sigmas_vox:
        steps.append(float(np.sqrt(sigma**2 - previous**2)))
        previous = sigma
    return steps


def _kernel_radius(sigma: float) -> int:
    return int(TRUNCATE * sigma + 0.5)  # as scipy.ndimage sizes its kernels


def filter_reach(weights, sigmas_vox=SIGMAS_VOX) -> int:
    """How far (voxels) :func:`apply_gain_filter` with these weights reaches: the sum of the
    radii of the cascade's kernels up to the last Gaussian with a nonzero weight."""
    used = max((k for k, w in enumerate(weights) if float(w) != 0.0), default=0)
    return sum(_kernel_radius(s) for s in _cascade_steps(sigmas_vox)[:used])


def kernel_response(sigma: float, f_per_voxel) -> np.ndarray:
    """Transfer function of scipy's sampled 1-D Gaussian kernel of width ``sigma`` (voxels),
    truncated at :data:`TRUNCATE` σ, at frequencies in cycles/voxel."""
    radius = _kernel_radius(sigma)
    k = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (k / sigma) ** 2)
    kernel /= kernel.sum()
    f = np.asarray(f_per_voxel, np.float64)
    return kernel[radius] + 2 * sum(
        kernel[radius + j] * np.cos(2 * np.pi * f * j) for j in range(1, radius + 1)
    )


def filter_response(weights, fz, fy, fx, sigmas_vox=SIGMAS_VOX) -> np.ndarray:
    """Transfer function of :func:`apply_gain_filter` at frequencies (``fz``, ``fy``, ``fx``,
    cycles/voxel, broadcastable): ``weights[0] + Σ weights[k] · H_k``, where ``H_k`` is the
    product over the axes and over the cascade's steps of :func:`kernel_response` — the
    filter as applied, sampled, truncated and separable (so not quite isotropic)."""
    out = np.full(np.broadcast(fz, fy, fx).shape, float(weights[0]))
    response = np.ones_like(out)
    for w, step in zip(weights[1:], _cascade_steps(sigmas_vox), strict=True):
        response = response * kernel_response(step, fz) * kernel_response(step, fy)
        response = response * kernel_response(step, fx)
        out += w * response
    return out


def _fit_frequencies(voxel_size_nm: float, edges_per_nm, n: int = _FIT_GRID):
    """Frequencies of one octant of an ``n``³ grid (the response is even along each axis),
    their radius, and weights that give each radial shell of width 1/``n`` the same share —
    shells beyond the axes' Nyquist frequency (0.5) 0.3 of it: few voxels' worth of a
    tomogram lie there."""
    axis = np.arange(n // 2 + 1) / n
    fz, fy, fx = (a.ravel() for a in np.meshgrid(axis, axis, axis, indexing="ij"))
    radius = np.sqrt(fz**2 + fy**2 + fx**2)
    shell = np.floor(radius * n).astype(int)
    weight = 1.0 / np.bincount(shell)[shell]
    weight = np.where(radius <= 0.5, weight, 0.3 * weight)
    return (fz, fy, fx), radius, weight / weight.sum()


def target_gain(gains, voxel_size_nm: float, f_per_voxel, edges_per_nm=SPECTRUM_EDGES_PER_NM):
    """:func:`gain_curve`, tapered linearly from the last bin's edge to 1 at the corners of
    the frequency cube (√3 / 2 cycles/voxel): what lies finer than the measured bins — half
    the cube's volume, mostly noise — is raised less the finer it is."""
    f = np.asarray(f_per_voxel, np.float64)
    last, corner = float(edges_per_nm[-1]) * voxel_size_nm, np.sqrt(3) / 2  # cycles/voxel
    taper = np.clip((f - last) / (corner - last), 0.0, 1.0)
    return gain_curve(gains, voxel_size_nm, f, edges_per_nm) * (1 - taper) + taper


def gain_weights(
    gains, voxel_size_nm: float, edges_per_nm=SPECTRUM_EDGES_PER_NM, sigmas_vox=SIGMAS_VOX
) -> np.ndarray:
    """Weights of the identity and each Gaussian whose :func:`filter_response` (the filter as
    applied) fits :func:`target_gain`: weighted least squares over a grid of 3-D frequencies,
    with a small ridge (:data:`RIDGE`) on the Gaussians' weights against large weights of
    alternating sign. Unit gains give the identity exactly.

    Within about 12 % of the gains, bin by bin, for the gain curves of the test simulator's
    tomograms; within 5 % of smooth ones (tests)."""
    gains = np.asarray(gains, np.float64)
    if np.all(gains == 1.0):
        return np.eye(len(sigmas_vox) + 1)[0]
    (fz, fy, fx), radius, weight = _fit_frequencies(voxel_size_nm, edges_per_nm)
    basis = [np.ones_like(radius)]
    response = np.ones_like(radius)
    for step in _cascade_steps(sigmas_vox):
        response = response * kernel_response(step, fz) * kernel_response(step, fy)
        response = response * kernel_response(step, fx)
        basis.append(response)
    a = np.column_stack(basis) * np.sqrt(weight)[:, None]
    b = target_gain(gains, voxel_size_nm, radius, edges_per_nm) * np.sqrt(weight)
    penalty = np.eye(a.shape[1]) * RIDGE
    penalty[0, 0] = 0.0  # the identity's weight is free
    return np.linalg.solve(a.T @ a + penalty, a.T @ b)


def apply_gain_filter(
    volume: np.ndarray,
    weights,
    sigmas_vox=SIGMAS_VOX,
    *,
    out: np.ndarray | None = None,
    planes: int | None = None,
    threads: int = 1,
) -> np.ndarray:
    """``weights[0] · volume + Σ weights[k] · G_k(volume)``, float32, where ``G_k`` is the
    Gaussian of width ``sigmas_vox[k]`` made as a cascade (each from the previous one,
    kernels truncated at :data:`TRUNCATE` σ, ``mode="nearest"``); Gaussians after the last
    nonzero weight are not computed.

    Computed a slab of ``planes`` z-planes at a time (by default as many as fit
    :data:`SLAB_BYTES` with their margins: usually the whole volume), each with a margin of
    real planes as wide as the cascade reaches, so that the result equals filtering the
    whole volume at once. ``volume`` may be a memory map; ``out`` (float32, the volume's
    shape, not sharing memory with it) too. Each Gaussian is shared among ``threads`` CPU
    threads (:func:`analysis.inference.gaussian.gaussian_filter`: the same result as one).
    """
    from analysis.inference.gaussian import gaussian_filter
    from analysis.io.memmap import release_pages

    shape = volume.shape
    out = np.empty(shape, np.float32) if out is None else out
    if np.may_share_memory(volume, out):  # later slabs would read planes already filtered
        raise ValueError("apply_gain_filter cannot write into the volume it filters")
    weights = [float(w) for w in weights]
    used = max((k for k, w in enumerate(weights) if w != 0.0), default=0)
    steps = _cascade_steps(sigmas_vox)[:used]
    margin = filter_reach(weights, sigmas_vox)
    if planes is None:
        plane_bytes = 4 * int(np.prod(shape[1:]))
        planes = max(SLAB_BYTES // max(plane_bytes, 1) - 2 * margin, margin, 1)
    for z0 in range(0, shape[0], planes):
        z1 = min(z0 + planes, shape[0])
        lo, hi = max(0, z0 - margin), min(shape[0], z1 + margin)
        # nearest-mode errors at a slab's inner faces reach at most ``margin`` planes in
        slab = np.asarray(volume[lo:hi], np.float32)
        result = weights[0] * slab
        blurred = slab
        for w, step in zip(weights[1:], steps, strict=False):
            blurred = gaussian_filter(
                blurred, step, mode="nearest", truncate=TRUNCATE, threads=threads
            )
            if w != 0.0:
                result += w * blurred
        out[z0:z1] = result[z0 - lo : z1 - lo]
        release_pages(volume)
        release_pages(out)
    return out


def matching_filter(
    volume: np.ndarray,
    voxel_size_nm: float,
    envelope: tuple[np.ndarray, np.ndarray],
    *,
    centre: float,
    scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The weights of the filter that brings ``volume``'s spectrum into the training data's
    range (:func:`gain_weights`), and the gain of each bin (:func:`spectrum_gains`).

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
        spectrum is measured on normalised crops at :data:`GRID_POSITIONS`, as the
        reference's were.
    """
    crops = [(crop - centre) / scale for crop in grid_crops(volume)]
    gains = spectrum_gains(grid_log_amplitude(crops, voxel_size_nm), *envelope)
    return gain_weights(gains, voxel_size_nm), gains


def is_identity(weights) -> bool:
    """Whether filter weights leave a volume as it is (all gains 1)."""
    weights = np.asarray(weights, np.float64)
    return bool(weights[0] == 1.0 and not np.any(weights[1:]))


def match_spectrum(
    volume: np.ndarray,
    voxel_size_nm: float,
    envelope: tuple[np.ndarray, np.ndarray],
    *,
    centre: float,
    scale: float,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` filtered so that its spectrum comes into the training data's range
    (:func:`matching_filter`, then :func:`apply_gain_filter`).

    Parameters
    ----------
    volume, voxel_size_nm, envelope, centre, scale
        As for :func:`matching_filter`.
    out : numpy.ndarray, optional
        Float32 array of the volume's shape to write into.

    Returns
    -------
    filtered : numpy.ndarray, float32
    gains : numpy.ndarray
        The gain of each bin (:func:`spectrum_gains`).
    """
    weights, gains = matching_filter(volume, voxel_size_nm, envelope, centre=centre, scale=scale)
    return apply_gain_filter(volume, weights, out=out), gains
