"""Vesicle probability maps of whole tomograms.

:func:`predict` is the one entry point: it takes a (z, y, x) tomogram of any size and voxel
size and a trained network with its checkpoint metadata, and returns a float32 probability map
of the tomogram's shape. The network comes as a :class:`analysis.models.Predictor` (weights,
device, precision, test-time augmentation; :meth:`~analysis.models.Predictor.load` makes one
from a model name or file); :func:`predict` itself only rescales, filters, normalises and
tiles. In order, it

1. checks that the voxel size is plausible for the network (a header in Å read as nm, or a
   tomogram binned far beyond what the network saw, gives an empty map, not an error — so it
   is refused here with a clear message);
2. resamples the tomogram to the network's training voxel size (:mod:`.rescale`);
3. by default, where the network's training spectra are known, filters it so that its
   amplitude spectrum comes into their range (:mod:`.spectrum`; ``match_spectrum``);
4. normalises it as in training (:mod:`analysis.normalise`), tile by tile in float32;
5. has the predictor predict overlapping tiles, several per forward pass, optionally under its
   test-time augmentation, whose variance is an uncertainty map;
6. blends the tiles (:mod:`.tiling`) and resamples the map back to the input grid.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from analysis.errors import DataError, ParameterError
from analysis.inference import spectrum
from analysis.inference.heap import reuse_freed_memory
from analysis.inference.rescale import needs_rescale, rescale, rescaled_shape
from analysis.inference.tiling import plan_tiles, sliding_window
from analysis.io.memmap import slabs, work_array
from analysis.models import Predictor
from analysis.normalise import DEFAULT_NORMALISATION, centre_and_scale

#: Voxel sizes more than this factor away from the network's are refused by default.
MAX_RESCALE = 3.0
# In-memory work arrays above this size go to a temporary memory-mapped file instead.
# (the resampled tomogram and map: 2 × 1.3 GB for a 4 GiB tomogram would not fit in 3 GB).
_SCRATCH_MEMORY_BYTES = 512 * 1024**2


def check_voxel_size(
    voxel_size_nm: float, model_voxel_size_nm: float, max_rescale: float = MAX_RESCALE
) -> float:
    """Return the resampling factor ``voxel_size_nm / model_voxel_size_nm`` if plausible.

    Raises
    ------
    ValueError
        For a non-positive voxel size, or one more than ``max_rescale`` times larger or
        smaller than the network's, with the likely cause spelled out.
    """
    if not (voxel_size_nm and np.isfinite(voxel_size_nm) and voxel_size_nm > 0):
        raise DataError(f"voxel size must be a positive number of nm, not {voxel_size_nm}")
    ratio = voxel_size_nm / model_voxel_size_nm
    if ratio > max_rescale or ratio < 1 / max_rescale:
        hint = (
            " (was a size in Å taken for nm?)"
            if 5 < ratio < 20
            else " (was a size in nm taken for Å?)"
            if 0.05 < ratio < 0.2
            else ""
        )
        raise DataError(
            f"voxel size {voxel_size_nm:g} nm is {ratio:.3g}× the {model_voxel_size_nm:g} nm "
            f"the network was trained at{hint}. A synaptic vesicle (~40 nm) would span "
            f"{40 / voxel_size_nm:.1f} voxels. Give the right voxel size, or allow this with "
            f"max_rescale (CLI: --max-rescale)."
        )
    return ratio


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use the CPUs this process may run on (containers and clusters often allow fewer)."""
    if threads is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        threads = min(torch.get_num_threads(), len(affinity)) if affinity else None
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tile_function(
    predictor: Predictor, centre: float, scale: float, uncertainty: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """The function of a batch of raw tiles (N, z, y, x) that :func:`sliding_window` calls.

    Tiles are normalised as ``(x - centre) / scale`` in float32 on the predictor's device and
    only then rounded to its precision. Returns (N, z, y, x) probabilities, or (N, 2, z, y, x)
    probabilities and variances with ``uncertainty``.
    """

    @torch.inference_mode()
    def run(cubes: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(cubes).to(predictor.device)
        result = predictor(((x - centre) / scale)[:, None], uncertainty=uncertainty)
        return result if uncertainty else result[:, 0]

    return run


def predict(
    tomogram: np.ndarray,
    voxel_size_nm: float,
    predictor: Predictor | None = None,
    *,
    tile: int | tuple[int, int, int] | str = "auto",
    overlap: float | None = None,
    blend: str = "gaussian",
    batch_size: int | None = None,
    return_uncertainty: bool = False,
    threads: int | None = None,
    max_rescale: float = MAX_RESCALE,
    invert: bool = False,
    match_spectrum: bool | str = spectrum.DEFAULT_MATCH,
    out: np.ndarray | None = None,
    uncertainty_out: np.ndarray | None = None,
    scratch_dir: str | os.PathLike | None = None,
    progress: bool = False,
):
    """Vesicle probability map of a whole tomogram.

    Parameters
    ----------
    tomogram : array-like, shape (z, y, x)
        Any real dtype and intensity scale; may be a memory map (read a slab at a time).
    voxel_size_nm : float
        Voxel size of ``tomogram`` in nm (``Tomogram.voxel_size_nm``).
    predictor : analysis.models.Predictor, optional
        The network with its device, precision and test-time augmentation; by default the
        shipped network as ``Predictor.load()`` gives it. Its checkpoint's
        ``voxel_size_nm`` and ``normalisation`` are always applied.
    tile : "auto", int or tuple of int
        Tile shape (z, y, x) at the network's voxel size. ``"auto"`` (default) plans tiles of
        up to 96×192×192 voxels sharing 16 voxels with each neighbour, sized to the volume
        (:func:`analysis.inference.plan_tiles`): each voxel is computed about 1.3 times
        instead of 2.4 times with 64³ tiles overlapping by a quarter, at the same Dice.
    overlap : float, optional
        Fraction of a tile shared with each neighbour, for a given ``tile`` (0.25 by
        default); ``"auto"`` tiles plan their own.
    blend : {"gaussian", "cosine", "constant"}
        Blending window for overlaps.
    batch_size : int, optional
        Tiles per forward pass (times the TTA views); 1 for ``"auto"`` tiles, else 2.
    return_uncertainty : bool
        Also return the variance of the probability across the predictor's TTA views.
    threads : int, optional
        CPU threads for torch; by default the CPUs this process may use.
    max_rescale : float
        Refuse voxel sizes more than this factor away from the network's.
    invert : bool
        Invert the contrast (for tomograms with membranes bright): the normalised tomogram's
        sign is flipped, at no cost (see :mod:`analysis.inference.domain`'s polarity check).
    match_spectrum : bool or "auto"
        Filter the tomogram first so that its amplitude spectrum comes into the range of the
        network's training data's (:mod:`analysis.inference.spectrum`). True needs the
        network's reference spectra (the shipped networks have them); ``"auto"`` matches
        where they are known and not otherwise
        (:func:`~analysis.inference.spectrum.matching_envelope`).
    out, uncertainty_out : numpy.ndarray, optional
        Float32 arrays of the tomogram's shape to write into (e.g. memory-mapped MRC data).
    scratch_dir : path, optional
        Where large intermediate volumes go (system temporary folder by default).
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    probability : numpy.ndarray, float32, shape of ``tomogram``, values in [0, 1]
    uncertainty : numpy.ndarray, float32, only if ``return_uncertainty``
    """
    shape = tuple(int(n) for n in tomogram.shape)
    if len(shape) != 3:
        raise DataError(f"a (z, y, x) tomogram is needed, not shape {shape}")
    if np.iscomplexobj(tomogram):
        raise DataError("complex tomograms cannot be segmented")
    predictor = _checked_predictor(predictor)
    meta = predictor.checkpoint
    ratio = check_voxel_size(voxel_size_nm, meta["voxel_size_nm"], max_rescale)
    norm = meta["normalisation"] or DEFAULT_NORMALISATION
    if return_uncertainty and predictor.n_views == 1:
        raise ParameterError("an uncertainty map needs test-time augmentation (tta='flips')")
    # before any work: True for a network without a reference is refused at once
    envelope = spectrum.matching_envelope(meta, match_spectrum)
    resample = needs_rescale(ratio)
    work_shape = rescaled_shape(shape, ratio) if resample else shape
    tile, overlap, batch_size = _tiling(tile, overlap, batch_size, work_shape)
    channels = 2 if return_uncertainty else 1
    if out is None:
        out = np.empty(shape, np.float32)
    if return_uncertainty and uncertainty_out is None:
        uncertainty_out = np.empty(shape, np.float32)
    finals = [out, uncertainty_out][:channels]

    with _torch_threads(threads):
        scratch = dict(memory_limit_bytes=_SCRATCH_MEMORY_BYTES, folder=scratch_dir)
        if resample:
            source = work_array(work_shape, **scratch)
            rescale(tomogram, work_shape, out=source)
        else:
            source = tomogram
        centre, scale = centre_and_scale(source, norm)
        if envelope is not None:
            weights, _ = spectrum.matching_filter(
                source, meta["voxel_size_nm"], envelope, centre=centre, scale=scale
            )
            if not spectrum.is_identity(weights):  # a spectrum in the range is left as it is
                filtered = work_array(work_shape, **scratch)
                source = spectrum.apply_gain_filter(
                    source, weights, out=filtered, threads=torch.get_num_threads()
                )
                centre, scale = centre_and_scale(source, norm)
        # allocated after the filter: the rescaled volume, if any, is freed by then
        maps = [work_array(work_shape, **scratch) for _ in finals] if resample else finals
        if invert:  # (x - c) / -s is the inverted tomogram normalised: same median and range
            scale = -scale
        fn = tile_function(predictor, centre, scale, return_uncertainty)
        with reuse_freed_memory():  # big tiles' activations: no page faults per pass
            sliding_window(
                source,
                fn,
                tile,
                overlap=overlap,
                batch_size=batch_size,
                mode=blend,
                channels=channels,
                out=maps if channels > 1 else maps[0],
                progress=progress,
            )
        if resample:
            for small, final in zip(maps, finals, strict=True):
                rescale(small, shape, out=final)
    if _clip_probability(out) < 0.5:
        warnings.warn(
            f"no voxel has a vesicle probability above 0.5 (voxel size {voxel_size_nm:g} nm, "
            f"network {meta['voxel_size_nm']:g} nm): check the voxel size and that this "
            "is a tomogram of a synapse with membranes dark",
            stacklevel=2,
        )
    return (out, uncertainty_out) if return_uncertainty else out


def _checked_predictor(predictor: Predictor | None) -> Predictor:
    """The predictor of :func:`predict` (the shipped network's by default), with the metadata
    prediction needs."""
    if predictor is None:
        predictor = Predictor.load()
    elif not isinstance(predictor, Predictor):
        raise ParameterError(
            "predict takes an analysis.models.Predictor, not a "
            f"{type(predictor).__name__}: Predictor.load(model) makes one from a model name, "
            "a file or a (network, checkpoint) pair"
        )
    missing = [key for key in ("voxel_size_nm", "normalisation") if key not in predictor.checkpoint]
    if missing:
        raise ParameterError(f"the predictor's checkpoint lacks {', '.join(missing)}")
    return predictor


def _tiling(tile, overlap, batch_size, work_shape) -> tuple:
    """The tile, overlap and batch size of :func:`predict` (its defaults filled in) for a
    volume of ``work_shape`` at the network's voxel size."""
    if isinstance(tile, str):
        if tile != "auto":
            raise ParameterError(f"tile must be 'auto', an int or 3 ints, not {tile!r}")
        if overlap is not None:
            raise ParameterError("overlap goes with an explicit tile; 'auto' tiles plan their own")
        tile, overlap = plan_tiles(work_shape)
        batch_size = batch_size or 1
    overlap = 0.25 if overlap is None else overlap
    return tile, overlap, batch_size or 2


def _clip_probability(out: np.ndarray) -> float:
    """Clip a probability map to [0, 1] in place (resampling can overshoot by rounding),
    slab-wise so that a memory-mapped map stays on disk; returns its highest value."""
    highest = 0.0
    for planes in slabs(out):
        np.clip(planes, 0.0, 1.0, out=planes)
        highest = max(highest, float(planes.max()))
    return highest


def predict_file(
    tomogram_path: str | os.PathLike,
    out_path: str | os.PathLike,
    predictor: Predictor | None = None,
    *,
    voxel_size_nm: float | None = None,
    uncertainty_path: str | os.PathLike | None = None,
    **options,
) -> Path:
    """Predict from an MRC/TIFF/OME-Zarr file to a float32 MRC, through memory maps.

    Neither the tomogram nor the map needs to fit in memory: the input is memory-mapped (MRC)
    and the output is written into a memory-mapped MRC, atomically (a temporary file renamed
    when complete). ``options`` are those of :func:`predict`.

    Parameters
    ----------
    tomogram_path : path
    out_path : path
        Output probability map (float32 MRC, same voxel size and origin as the input).
    predictor : analysis.models.Predictor, optional
        The shipped network by default.
    voxel_size_nm : float, optional
        Overrides the header's voxel size.
    uncertainty_path : path, optional
        Also write the TTA variance map here (needs a predictor with ``tta``).
    """
    from analysis.io import open_mrc_output, read_tomogram

    tomo = read_tomogram(tomogram_path, voxel_size_nm=voxel_size_nm, mmap=True)
    header = dict(voxel_size_nm=tomo.voxel_size_nm, origin_angstrom=tomo.origin_angstrom)
    with contextlib.ExitStack() as stack:
        prob = stack.enter_context(open_mrc_output(out_path, tomo.shape, **header))
        unc = None
        if uncertainty_path is not None:
            unc = stack.enter_context(open_mrc_output(uncertainty_path, tomo.shape, **header))
        try:
            predict(
                tomo.data,
                tomo.voxel_size_nm,
                predictor,
                out=prob,
                uncertainty_out=unc,
                return_uncertainty=unc is not None,
                **options,
            )
        except DataError as err:
            raise err.in_file(tomogram_path) from err
    return Path(out_path)
