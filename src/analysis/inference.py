"""Whole-tomogram prediction: tiled sliding window with smoothly blended overlaps.

This module so far holds the stitching core, :func:`sliding_window`: it cuts a (z, y, x) volume
into overlapping tiles, runs a function on batches of them and blends the results with a window
that falls off towards the tile edges, where a network sees least context. With an identity
function the output equals the input for any shape, tile and overlap.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BLEND_MODES = ("gaussian", "cosine", "constant")
# Blending weights never reach 0, so that voxels covered only by tile edges stay defined.
_MIN_WEIGHT = 1e-3


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Start indices of tiles of length ``tile`` every ``step`` voxels covering ``size``.

    The last tile ends exactly at the border; a size smaller than a tile gives one start, 0.
    """
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


def blend_window(tile: tuple[int, int, int], mode: str = "gaussian", sigma_scale: float = 0.125):
    """Blending weights of shape ``tile``: 1 in the middle, falling towards the edges.

    Parameters
    ----------
    tile : tuple of int
        Tile shape (z, y, x).
    mode : {"gaussian", "cosine", "constant"}
        Gaussian with sigma = ``sigma_scale`` × tile size (as nnU-Net and MONAI do), a raised
        cosine (Hann) window, or flat averaging.
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"blend mode must be one of {BLEND_MODES}, not {mode!r}")
    profiles = []
    for n in tile:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        if mode == "gaussian":
            p = np.exp(-0.5 * (x / (sigma_scale * n)) ** 2)
        elif mode == "cosine":
            p = np.cos(np.pi * x / (n + 1)) ** 2
        else:
            p = np.ones(n)
        profiles.append(p / p.max())
    window = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return np.maximum(window, _MIN_WEIGHT).astype(np.float32)


def sliding_window(
    volume: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    tile: int | tuple[int, int, int],
    *,
    overlap: float = 0.25,
    batch_size: int = 4,
    mode: str = "gaussian",
    progress: bool = False,
) -> np.ndarray:
    """Apply ``fn`` to overlapping tiles of ``volume`` and blend the results.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
    fn : callable
        Takes a float32 batch (b, tz, ty, tx) and returns an array of the same shape.
    tile : int or tuple of int
        Tile shape (z, y, x); axes where the volume is smaller are padded (reflected) to a
        full tile and cropped back.
    overlap : float
        Fraction of a tile shared with its neighbour, in [0, 1).
    batch_size : int
        Tiles per call of ``fn`` (several per network call amortise its overhead).
    mode : {"gaussian", "cosine", "constant"}
        Blending window, see :func:`blend_window`.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    numpy.ndarray, float32, the shape of ``volume``
    """
    from tqdm.auto import tqdm

    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    tile = (tile,) * 3 if isinstance(tile, int) else tuple(int(t) for t in tile)
    shape = volume.shape
    pad = [(0, max(0, t - n)) for t, n in zip(tile, shape, strict=True)]
    source = np.pad(volume, pad, mode="reflect") if any(p[1] for p in pad) else volume
    padded = source.shape
    steps = [max(1, int(round(t * (1 - overlap)))) for t in tile]
    starts = [tile_starts(n, t, s) for n, t, s in zip(padded, tile, steps, strict=True)]
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    window = blend_window(tile, mode)
    out = np.zeros(padded, np.float32)
    weight = np.zeros(padded, np.float32)
    batches = range(0, len(corners), batch_size)
    for i in tqdm(batches, desc="tiles", disable=not progress, leave=False):
        group = corners[i : i + batch_size]
        cubes = np.stack(
            [source[z : z + tile[0], y : y + tile[1], x : x + tile[2]] for z, y, x in group]
        ).astype(np.float32, copy=False)
        result = np.asarray(fn(cubes), dtype=np.float32)
        if result.shape != cubes.shape:
            raise ValueError(f"fn returned shape {result.shape} for input {cubes.shape}")
        for (z, y, x), r in zip(group, result, strict=True):
            sl = np.s_[z : z + tile[0], y : y + tile[1], x : x + tile[2]]
            out[sl] += r * window
            weight[sl] += window
    out /= weight
    return out[: shape[0], : shape[1], : shape[2]]
