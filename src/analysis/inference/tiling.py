"""Tiled sliding-window prediction with smoothly blended overlaps.

:func:`sliding_window` cuts a (z, y, x) volume into overlapping tiles, runs a function on
batches of them and blends the results with a window that falls off towards the tile edges,
where a network sees least context. The window is separable, so the sum of the weights at
every voxel is a product of three 1-D sums: no weight volume is stored, and the output is
finished row of tiles by row of tiles (along z), which lets input and output be
memory-mapped files larger than memory. With an identity function the output equals the
input for any shape, tile and overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from analysis.errors import ParameterError
from analysis.io.memmap import release_pages

BLEND_MODES = ("gaussian", "cosine", "constant")
# Each 1-D profile stays above this, so every voxel has a positive weight without the
# non-separable clamp of MONAI and nnU-Net (1e-3 on the 3-D window).
_MIN_PROFILE = 1e-4


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Start indices of tiles of length ``tile`` every ``step`` voxels covering ``size``.

    The last tile ends exactly at the border; a size not larger than a tile gives one start, 0.
    """
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


def blend_profile(n: int, mode: str = "gaussian", sigma_scale: float = 0.125) -> np.ndarray:
    """1-D blending weights of length ``n`` (maximum 1, symmetric, all positive).

    Parameters
    ----------
    n : int
        Tile length in voxels.
    mode : {"gaussian", "cosine", "constant"}
        Gaussian with sigma = ``sigma_scale`` × ``n`` (as nnU-Net and MONAI), a raised cosine
        (Hann) window, or flat averaging.
    sigma_scale : float
        Width of the Gaussian relative to the tile.
    """
    if mode not in BLEND_MODES:
        raise ParameterError(f"blend mode must be one of {BLEND_MODES}, not {mode!r}")
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    if mode == "gaussian":
        p = np.exp(-0.5 * (x / (sigma_scale * n)) ** 2)
    elif mode == "cosine":
        p = np.cos(np.pi * x / (n + 1)) ** 2
    else:
        p = np.ones(n)
    return np.maximum(p / p.max(), _MIN_PROFILE)


def blend_window(tile: tuple[int, int, int], mode: str = "gaussian", sigma_scale: float = 0.125):
    """3-D blending weights of shape ``tile`` (float32): the outer product of the profiles."""
    pz, py, px = (blend_profile(n, mode, sigma_scale) for n in tile)
    return (pz[:, None, None] * py[None, :, None] * px[None, None, :]).astype(np.float32)


def tile_grid(
    shape: tuple[int, int, int],
    tile: int | tuple[int, int, int],
    overlap: float | tuple[float, float, float] = 0.25,
) -> tuple[tuple[int, int, int], list[list[int]]]:
    """The tiling :func:`sliding_window` uses: tile shape and start indices along z, y, x.

    Tiles shrink to the volume along axes where it is smaller; neighbours are
    ``int(tile · (1 − overlap))`` apart (as in MONAI; ``overlap`` may differ per axis) and the
    last tile ends at the border. The number of tiles is the product of the lengths of the
    three start lists.
    """
    overlaps = (overlap,) * 3 if np.isscalar(overlap) else tuple(overlap)
    if len(overlaps) != 3 or not all(0 <= o < 1 for o in overlaps):
        raise ParameterError(
            f"overlap must be in [0, 1) (one value or one per axis), not {overlap}"
        )
    tile = (tile,) * 3 if isinstance(tile, int) else tuple(int(t) for t in tile)
    tile = tuple(min(t, n) for t, n in zip(tile, shape, strict=True))
    # the small epsilon keeps a planned step (tile − margin) from rounding down by one
    steps = [max(1, int(t * (1 - o) + 1e-6)) for t, o in zip(tile, overlaps, strict=True)]
    return tile, [tile_starts(n, t, s) for n, t, s in zip(shape, tile, steps, strict=True)]


#: Largest tile (z, y, x) :func:`plan_tiles` picks by default. One forward pass of a tile this
#: size needs about 0.7 GB in bfloat16; larger tiles are no faster per voxel on a CPU.
AUTO_MAX_TILE = (96, 192, 192)
#: Voxels shared by neighbouring tiles in a plan: a U-Net's outermost voxels see least context.
AUTO_MARGIN_VOX = 16


def plan_tiles(
    shape: tuple[int, int, int],
    max_tile: int | tuple[int, int, int] = AUTO_MAX_TILE,
    margin_vox: int = AUTO_MARGIN_VOX,
    multiple: int = 8,
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Tile shape and per-axis overlap covering ``shape`` with the fewest voxels computed.

    A fixed tile with a fixed overlap fraction computes far more voxels than the volume has:
    64³ tiles overlapping by a quarter compute each voxel about 2.4 times. Here each axis
    gets the fewest tiles of at most ``max_tile`` voxels that cover it while neighbours share
    at least ``margin_vox`` voxels, and the tiles are then shrunk to just cover the axis
    (rounded up to ``multiple``, which a U-Net of depth 3 needs).

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape (z, y, x) at the network's voxel size.
    max_tile : int or tuple of 3 int
        Largest tile edge per axis, voxels.
    margin_vox : int
        Smallest overlap of neighbouring tiles, voxels.
    multiple : int
        Tile edges are multiples of this (unless the volume is smaller).

    Returns
    -------
    tile : tuple of 3 int
    overlap : tuple of 3 float
        Fractions for :func:`tile_grid` / :func:`sliding_window`.
    """
    max_tile = (max_tile,) * 3 if isinstance(max_tile, int) else tuple(max_tile)
    if any(t <= margin_vox for t in max_tile):
        raise ParameterError(f"max_tile {max_tile} must exceed the margin of {margin_vox} voxels")
    tile, overlap = [], []
    for n, t_max in zip(shape, max_tile, strict=True):
        count = max(1, -(-(n - margin_vox) // (t_max - margin_vox)))
        t = -(-(n + (count - 1) * margin_vox) // count)
        t = min(n, -(-t // multiple) * multiple)
        tile.append(int(t))
        overlap.append(margin_vox / t if count > 1 else 0.0)
    return tuple(tile), tuple(overlap)


def _coverage(size: int, tile: int, starts: list[int], profile: np.ndarray) -> np.ndarray:
    """Sum of the 1-D profiles of all tiles along one axis, per voxel."""
    total = np.zeros(size, np.float64)
    for s in starts:
        total[s : s + tile] += profile
    return total


def sliding_window(
    volume: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    tile: int | tuple[int, int, int],
    *,
    overlap: float | tuple[float, float, float] = 0.25,
    batch_size: int = 4,
    mode: str = "gaussian",
    channels: int = 1,
    out: np.ndarray | Sequence[np.ndarray] | None = None,
    progress: bool = False,
) -> np.ndarray | tuple[np.ndarray, ...]:
    """Apply ``fn`` to overlapping tiles of ``volume`` and blend the results.

    Parameters
    ----------
    volume : array-like, shape (z, y, x)
        A numpy array or memory map; tiles are read from it one at a time.
    fn : callable
        Takes a float32 batch (b, tz, ty, tx) and returns an array of that shape, or of shape
        (b, channels, tz, ty, tx) when ``channels`` > 1.
    tile : int or tuple of int
        Tile shape (z, y, x). Along axes where the volume is smaller, the tile shrinks to the
        volume (``fn`` must then accept that smaller size, as the U-Net does).
    overlap : float or tuple of 3 floats
        Fraction of a tile shared with its neighbour, in [0, 1), for all axes or per axis.
    batch_size : int
        Tiles per call of ``fn`` (several per network call amortise its overhead).
    mode : {"gaussian", "cosine", "constant"}
        Blending window, see :func:`blend_profile`.
    channels : int
        Number of output maps ``fn`` returns per tile.
    out : array or sequence of arrays, optional
        Float32 output(s) of the volume's shape, e.g. memory-mapped files; their previous
        content is ignored. Allocated in memory when not given.
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    numpy.ndarray (float32, the shape of ``volume``), or a tuple of ``channels`` of them
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, not {batch_size}")
    shape = tuple(volume.shape)
    if len(shape) != 3:
        raise ValueError(f"a (z, y, x) volume is needed, not shape {shape}")
    tile, starts = tile_grid(shape, tile, overlap)
    profiles = [blend_profile(t, mode).astype(np.float32) for t in tile]
    window = blend_window(tile, mode)
    cover_z = _coverage(shape[0], tile[0], starts[0], profiles[0])
    cover_yx = np.outer(
        *(
            _coverage(n, t, s, p)
            for n, t, s, p in zip(shape[1:], tile[1:], starts[1:], profiles[1:], strict=True)
        )
    ).astype(np.float32)

    outputs = _output_arrays(out, shape, channels)
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    zeroed = 0  # planes [0, zeroed) have been initialised to 0 in the outputs
    finished = 0  # planes [0, finished) are final
    bar = tqdm(total=len(corners), desc="tiles", unit="tile", disable=not progress, leave=False)
    for i in range(0, len(corners), batch_size):
        group = corners[i : i + batch_size]
        end = max(z for z, _, _ in group) + tile[0]
        _zero_planes(outputs, zeroed, end)
        zeroed = max(zeroed, end)
        _add_tiles(volume, fn, group, tile, channels, window, outputs)
        bar.update(len(group))
        # Memory-mapped input and output hold only the current tiles in memory.
        release_pages(volume)
        for o in outputs:
            release_pages(o)
        # Planes before the next tile's start receive nothing more: normalise and release them.
        following = corners[i + batch_size][0] if i + batch_size < len(corners) else shape[0]
        if following > finished:
            _normalise_planes(outputs, finished, following, cover_z, cover_yx)
            finished = following
    bar.close()
    return outputs[0] if channels == 1 else tuple(outputs)


def _output_arrays(out, shape: tuple, channels: int) -> list[np.ndarray]:
    """The ``out`` of :func:`sliding_window` as a list of ``channels`` arrays (checked), or
    new ones in memory."""
    if out is None:
        outputs = [np.empty(shape, np.float32) for _ in range(channels)]
    elif isinstance(out, (list, tuple)):
        outputs = list(out)
    else:
        outputs = [out]
    if len(outputs) != channels or any(tuple(o.shape) != shape for o in outputs):
        raise ValueError(f"out must be {channels} array(s) of shape {shape}")
    return outputs


def _zero_planes(outputs: list[np.ndarray], start: int, stop: int) -> None:
    """Set planes [start, stop) of the outputs to 0, a few at a time (memory maps stay on
    disk)."""
    for k in range(start, stop, 8):
        for o in outputs:
            o[k : min(k + 8, stop)] = 0
            release_pages(o)


def _add_tiles(volume, fn, group, tile, channels, window, outputs) -> None:
    """Run ``fn`` on the tiles at the corners ``group`` and add its maps, weighted by
    ``window``, to the outputs."""
    cubes = np.stack(
        [np.asarray(volume[z : z + tile[0], y : y + tile[1], x : x + tile[2]]) for z, y, x in group]
    ).astype(np.float32, copy=False)
    result = np.asarray(fn(cubes), dtype=np.float32)
    expected = cubes.shape if channels == 1 else (len(group), channels, *tile)
    if result.shape != expected:
        raise ValueError(f"fn returned shape {result.shape}, expected {expected}")
    result = result.reshape(len(group), channels, *tile)
    for (z, y, x), maps in zip(group, result, strict=True):
        sl = np.s_[z : z + tile[0], y : y + tile[1], x : x + tile[2]]
        for o, m in zip(outputs, maps, strict=True):
            m *= window
            o[sl] += m


def _normalise_planes(outputs, start: int, stop: int, cover_z, cover_yx) -> None:
    """Divide planes [start, stop) of the outputs by the sum of the weights there, plane by
    plane (no slab-sized temporary)."""
    for k in range(start, stop):
        norm = np.float32(cover_z[k]) * cover_yx
        for o in outputs:
            o[k] /= norm
            if k % 8 == 7:
                release_pages(o)
