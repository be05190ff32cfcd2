"""Resampling a tomogram to another voxel size, slab by slab.

The network only works at the voxel size it was trained at (vesicle membranes a few voxels
thick, radii of 8–12 voxels at 2.2 nm), so :func:`~analysis.inference.predict` resamples every
tomogram to it and the probability map back. Resampling is linear interpolation between voxel
centres (the convention of ``torch.nn.functional.interpolate(align_corners=False)`` and
``scipy.ndimage.zoom(grid_mode=True)``); when shrinking, the interpolation kernel is widened
by the shrink factor (a triangle filter, as Pillow and torch's ``antialias=True`` do), so
noise above the new Nyquist frequency is averaged rather than aliased. It runs over z-slabs,
so input and output can be memory-mapped files larger than memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from analysis.io.memmap import release_pages

#: Relative voxel-size differences below this are not worth resampling for.
RESCALE_TOLERANCE = 0.005


def needs_rescale(ratio: float) -> bool:
    """Whether a volume whose voxel size is ``ratio`` × the network's is resampled."""
    return abs(ratio - 1) > RESCALE_TOLERANCE


def rescaled_shape(shape, ratio: float) -> tuple[int, ...]:
    """The (z, y, x) shape of a volume of ``shape`` resampled by ``ratio`` (its voxel size ÷
    the target voxel size), at least one voxel an axis."""
    return tuple(max(1, round(n * ratio)) for n in shape)


def to_network_grid(volume: np.ndarray, ratio: float) -> np.ndarray:
    """``volume`` resampled by ``ratio`` as :func:`analysis.inference.predict` does, or as it
    is where :func:`needs_rescale` says no."""
    return rescale(volume, rescaled_shape(volume.shape, ratio)) if needs_rescale(ratio) else volume


def resampling_matrix(n_in: int, n_out: int, antialias: bool = True) -> np.ndarray:
    """Weights (n_out, n_in) of 1-D linear resampling between voxel centres.

    Row ``k`` gives output voxel ``k`` as a weighted mean of input voxels; rows sum to 1.
    Output voxel ``k`` sits at input coordinate ``(k + 0.5) · n_in / n_out − 0.5``; beyond
    the ends the edge voxel is repeated.

    Parameters
    ----------
    n_in, n_out : int
        Number of voxels before and after.
    antialias : bool
        When shrinking (``n_out < n_in``), widen the triangle kernel by ``n_in / n_out``.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resample {n_in} voxels to {n_out}")
    scale = n_in / n_out
    width = max(scale, 1.0) if antialias else 1.0
    centres = (np.arange(n_out) + 0.5) * scale  # in units where input voxel i spans [i, i+1)
    inputs = np.arange(n_in) + 0.5
    weights = np.clip(1.0 - np.abs(inputs[None, :] - centres[:, None]) / width, 0.0, None)
    empty = weights.sum(1) == 0  # only possible at the ends: take the nearest voxel
    nearest = np.clip(np.floor(centres[empty]).astype(int), 0, n_in - 1)
    weights[np.flatnonzero(empty), nearest] = 1.0
    return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def rescale(
    volume: np.ndarray,
    shape: tuple[int, int, int],
    *,
    antialias: bool = True,
    out: np.ndarray | None = None,
    chunk: int = 16,
) -> np.ndarray:
    """Resample a (z, y, x) volume to ``shape`` (see the module notes for the method).

    Parameters
    ----------
    volume : array-like, shape (z, y, x)
        Read a slab at a time, so it may be a memory map.
    shape : tuple of int
        Output shape (z, y, x); usually ``round(n · old_voxel_size / new_voxel_size)``.
    antialias : bool
        Low-pass when shrinking, see :func:`resampling_matrix`.
    out : numpy.ndarray, optional
        Float32 array of ``shape`` to write into (e.g. a memory map).
    chunk : int
        Output planes computed at a time.

    Returns
    -------
    numpy.ndarray, float32, of ``shape``
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or np.ndim(volume) != 3:
        raise ValueError("rescale works on (z, y, x) volumes")
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    wz = resampling_matrix(volume.shape[0], shape[0], antialias)
    same_plane = tuple(volume.shape[1:]) == shape[1:]
    for k0 in range(0, shape[0], chunk):
        rows = wz[k0 : k0 + chunk]
        used = np.flatnonzero(rows.any(0))
        lo, hi = int(used[0]), int(used[-1]) + 1
        slab = np.asarray(volume[lo:hi], dtype=np.float32)
        planes = np.tensordot(rows[:, lo:hi], slab, axes=1)
        if not same_plane:
            planes = F.interpolate(
                torch.from_numpy(np.ascontiguousarray(planes))[:, None],
                size=shape[1:],
                mode="bilinear",
                align_corners=False,
                antialias=antialias,
            )[:, 0].numpy()
        out[k0 : k0 + len(rows)] = planes
        release_pages(volume)
        release_pages(out)
    return out
