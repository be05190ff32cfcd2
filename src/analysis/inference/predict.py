"""Vesicle probability maps of whole tomograms.

:func:`predict` is the one entry point: it takes a (z, y, x) tomogram of any size and voxel
size and a trained network with its checkpoint metadata, and returns a float32 probability map
of the tomogram's shape. In order, it

1. checks that the voxel size is plausible for the network (a header in Å read as nm, or a
   tomogram binned far beyond what the network saw, gives an empty map, not an error — so it
   is refused here with a clear message);
2. resamples the tomogram to the network's training voxel size (:mod:`.rescale`);
3. normalises it as in training (:mod:`analysis.normalise`), tile by tile in float32;
4. predicts overlapping tiles, several per forward pass, optionally under the 8 (or 4) flips
   and 90° rotations in the xy plane (test-time augmentation, TTA), whose variance is an
   uncertainty map; the missing wedge makes z different, so z is never flipped;
5. blends the tiles (:mod:`.tiling`) and resamples the map back to the input grid.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from analysis.errors import DataError, ParameterError
from analysis.inference.heap import reuse_freed_memory
from analysis.inference.rescale import rescale
from analysis.inference.tiling import plan_tiles, sliding_window
from analysis.io.memmap import slabs, work_array
from analysis.model import (
    UNet3D,
    inference_network,
    load_model,
    load_shipped_model,
    select_device,
)
from analysis.normalise import DEFAULT_NORMALISATION, centre_and_scale

CL = torch.channels_last_3d
#: Arithmetic of the forward pass: "auto" takes bfloat16 where the hardware runs it natively
#: (about 2× faster on CPUs with AVX-512 BF16 or AMX, and on recent GPUs), else float32.
PRECISIONS = ("auto", "float32", "bfloat16")
#: Test-time augmentation modes and the number of xy transforms each averages over.
TTA_MODES = {"none": 1, "flips": 4, "d4": 8}
#: Voxel sizes more than this factor away from the network's are refused by default.
MAX_RESCALE = 3.0
#: Relative voxel-size differences below this are not worth resampling for.
RESCALE_TOLERANCE = 0.005
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


def _resolve_model(
    model, device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[UNet3D, dict]:
    from analysis.cryovesnet import resolve_model_name

    model = resolve_model_name(model)  # "cryovesnet" or a Keras .h5 → a checkpoint path
    if model is None:
        net, meta = load_shipped_model(device)
    elif isinstance(model, (str, os.PathLike)):
        net, meta = load_model(model, device)
    elif isinstance(model, tuple) and len(model) == 2:
        net, meta = model
    else:
        raise TypeError(
            "model must be None (the shipped network), a checkpoint path, or the "
            "(network, checkpoint) pair returned by analysis.model.load_model"
        )
    for key in ("voxel_size_nm", "normalisation"):
        if key not in meta:
            raise ValueError(f"the checkpoint metadata lacks {key!r}; inference needs it")
    return inference_network(net, device, dtype), meta


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


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the network computes in for ``precision`` on ``device``.

    bfloat16 keeps float32's range (no overflow, unlike float16) with an 8-bit mantissa; the
    probability maps differ by ~1e-3 and the vesicle masks not measurably (chapter 3). It is
    only chosen automatically where it is native: emulated, it is slower than float32.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "float32":
        return torch.float32
    native = (
        torch.cuda.is_bf16_supported()
        if device.type == "cuda"
        else device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
    if precision == "bfloat16" or native:
        return torch.bfloat16
    return torch.float32


def _xy_transforms(mode: str) -> list[tuple[int, bool]]:
    """(quarter turns in xy, flip x) pairs of a TTA mode."""
    if mode not in TTA_MODES:
        raise ParameterError(f"tta must be one of {tuple(TTA_MODES)}, not {mode!r}")
    if mode == "none":
        return [(0, False)]
    if mode == "flips":  # identity, flip x, flip y (= rot 180 + flip x), flip both (= rot 180)
        return [(0, False), (0, True), (2, True), (2, False)]
    return [(k, flip) for k in range(4) for flip in (False, True)]


def _apply(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def _undo(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


def _tile_predictor(net, device, centre, scale, transforms, uncertainty, dtype=torch.float32):
    """The function of a tile batch that :func:`sliding_window` calls.

    ``net`` holds its weights in ``dtype`` (:func:`analysis.model.inference_network`); the
    tiles are normalised in float32 and only then rounded to ``dtype``.
    """

    @torch.inference_mode()
    def run(cubes: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(cubes).to(device)
        x = ((x - centre) / scale).to(dtype)[:, None]
        square = x.shape[-1] == x.shape[-2]
        usable = [(k, f) for k, f in transforms if square or k % 2 == 0]
        # one forward pass per view: a batch of all views at once is slower on a CPU (its
        # activations fall out of cache) and needs more memory
        views = torch.stack(
            [
                _undo(
                    torch.sigmoid(net(_apply(x, k, f).contiguous(memory_format=CL)).float()), k, f
                )
                for k, f in usable
            ]
        )[:, :, 0]  # (views, b, z, y, x)
        mean = views.mean(0)
        if not uncertainty:
            return mean.cpu().numpy()
        return torch.stack([mean, views.var(0, unbiased=False)], 1).cpu().numpy()

    return run


def predict(
    tomogram: np.ndarray,
    voxel_size_nm: float,
    model=None,
    *,
    tile: int | tuple[int, int, int] | str = "auto",
    overlap: float | None = None,
    blend: str = "gaussian",
    batch_size: int | None = None,
    tta: str = "none",
    return_uncertainty: bool = False,
    device: str = "auto",
    threads: int | None = None,
    max_rescale: float = MAX_RESCALE,
    precision: str = "auto",
    invert: bool = False,
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
    model : None, path or (UNet3D, dict), optional
        The shipped network (default), a checkpoint file, or the pair returned by
        :func:`analysis.model.load_model`. The checkpoint's ``voxel_size_nm`` and
        ``normalisation`` are always applied.
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
    tta : {"none", "flips", "d4"}
        Test-time augmentation over xy flips (4 views) or all flips and quarter turns (8).
    return_uncertainty : bool
        Also return the variance of the probability across the TTA views.
    device : {"auto", "cuda", "mps", "cpu"}
        Where to run the network; ``"auto"`` takes CUDA when present.
    threads : int, optional
        CPU threads for torch; by default the CPUs this process may use.
    max_rescale : float
        Refuse voxel sizes more than this factor away from the network's.
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the network (:func:`resolve_precision`); blending is always float32.
    invert : bool
        Invert the contrast (for tomograms with membranes bright): the normalised tomogram's
        sign is flipped, at no cost (see :mod:`analysis.inference.domain`'s polarity check).
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
    torch_device = select_device(device)
    dtype = resolve_precision(precision, torch_device)
    net, meta = _resolve_model(model, torch_device, dtype)
    ratio = check_voxel_size(voxel_size_nm, meta["voxel_size_nm"], max_rescale)
    norm = meta["normalisation"] or DEFAULT_NORMALISATION
    transforms = _xy_transforms(tta)
    if return_uncertainty and len(transforms) == 1:
        raise ParameterError(
            "an uncertainty map needs test-time augmentation (tta='flips' or 'd4')"
        )
    resample = abs(ratio - 1) > RESCALE_TOLERANCE
    work_shape = tuple(max(1, round(n * ratio)) for n in shape) if resample else shape
    if isinstance(tile, str):
        if tile != "auto":
            raise ParameterError(f"tile must be 'auto', an int or 3 ints, not {tile!r}")
        if overlap is not None:
            raise ParameterError("overlap goes with an explicit tile; 'auto' tiles plan their own")
        tile, overlap = plan_tiles(work_shape)
        batch_size = batch_size or 1
    overlap = 0.25 if overlap is None else overlap
    batch_size = batch_size or 2
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
            maps = [work_array(work_shape, **scratch) for _ in finals]
        else:
            source, maps = tomogram, finals
        centre, scale = centre_and_scale(source, norm)
        if invert:  # (x - c) / -s is the inverted tomogram normalised: same median and range
            scale = -scale
        fn = _tile_predictor(
            net, torch_device, centre, scale, transforms, return_uncertainty, dtype
        )
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
    highest = 0.0
    for planes in slabs(out):  # slab-wise, so that a memory-mapped output stays on disk
        np.clip(planes, 0.0, 1.0, out=planes)  # resampling can overshoot by rounding
        highest = max(highest, float(planes.max()))
    if highest < 0.5:
        warnings.warn(
            f"no voxel has a vesicle probability above 0.5 (voxel size {voxel_size_nm:g} nm, "
            f"network {meta['voxel_size_nm']:g} nm): check the voxel size and that this "
            "is a tomogram of a synapse with membranes dark",
            stacklevel=2,
        )
    return (out, uncertainty_out) if return_uncertainty else out


def predict_file(
    tomogram_path: str | os.PathLike,
    out_path: str | os.PathLike,
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
    voxel_size_nm : float, optional
        Overrides the header's voxel size.
    uncertainty_path : path, optional
        Also write the TTA variance map here (needs ``tta``).
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
                out=prob,
                uncertainty_out=unc,
                return_uncertainty=unc is not None,
                **options,
            )
        except DataError as err:
            raise err.in_file(tomogram_path) from err
    return Path(out_path)
