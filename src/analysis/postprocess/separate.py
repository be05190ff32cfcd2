"""From a binary mask to one label per vesicle.

Connected components (``cc3d``, 6-connectivity, so that vesicles touching at an edge or a
corner stay apart) are the first guess. Vesicles packed against each other merge into one
component; two ways of splitting them are offered, each working on one component at a time in
its bounding box, so the cost follows the clusters, not the volume:

``"watershed"`` (default)
    A watershed on the distance transform (``edt``), seeded at distance maxima at least
    ``min_radius`` apart — a vesicle-size prior: two seeds closer than the smallest vesicle
    radius belong to one vesicle.
``"threshold"``
    CryoVesNet's adaptive local threshold: the probability threshold inside the component is
    raised step by step until it falls apart into at least two pieces of vesicle size; the
    pieces then grow back over the component by a watershed on the probability.

Chapter 4 of the book compares the two on synthetic truth.
"""

from __future__ import annotations

import os

import cc3d
import edt
import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from analysis.errors import ParameterError
from analysis.io.memmap import map_slabs, release_pages, work_array

SPLIT_METHODS = ("watershed", "threshold", "none")
#: Thresholds tried, in order, by the ``"threshold"`` method.
LOCAL_THRESHOLDS = tuple(np.round(np.arange(0.55, 1.0, 0.05), 2)) + (0.99, 0.995, 0.999)


def _seeds(distance: np.ndarray, min_separation_vox: float, min_depth_vox: float) -> np.ndarray:
    """Seed labels (1 … n) at distance maxima: highest within ``min_separation_vox``, deep enough.

    Adjacent maxima on a plateau form one seed.
    """
    size = max(3, 2 * int(round(min_separation_vox)) + 1)
    peaks = (distance == ndimage.maximum_filter(distance, size=size)) & (distance >= min_depth_vox)
    return cc3d.connected_components(peaks, connectivity=26)


def _split_watershed(region: np.ndarray, min_radius_vox: float) -> np.ndarray:
    distance = edt.edt(region, black_border=False, parallel=1)
    seeds = _seeds(distance, min_radius_vox, 0.5 * min_radius_vox)
    if seeds.max() <= 1:
        return region.astype(np.int32)
    return watershed(-distance, seeds, mask=region).astype(np.int32)


def _split_threshold(
    region: np.ndarray, probability: np.ndarray, min_radius_vox: float
) -> np.ndarray:
    # A piece counts as a vesicle core when it holds a ball of half the minimum radius.
    min_volume = 4 / 3 * np.pi * (0.5 * min_radius_vox) ** 3
    for level in LOCAL_THRESHOLDS:
        pieces = cc3d.connected_components(region & (probability > level), connectivity=6)
        sizes = np.bincount(pieces.ravel())
        big = np.flatnonzero(sizes[1:] >= min_volume) + 1
        if len(big) >= 2:
            seeds = np.zeros_like(pieces, dtype=np.int32)
            for i, piece in enumerate(big, start=1):
                seeds[pieces == piece] = i
            return watershed(-probability, seeds, mask=region).astype(np.int32)
        if len(big) == 0:
            break
    return region.astype(np.int32)


def connected_components(
    mask: np.ndarray,
    *,
    memory_limit_bytes: int | None = None,
    folder: str | os.PathLike | None = None,
    slab_voxels: int = 1 << 24,
) -> np.ndarray:
    """6-connected components of a binary (z, y, x) mask as an int32 label volume.

    Components are numbered in the order of their first voxel in a z, y, x scan. With
    ``memory_limit_bytes``, a label volume larger than that goes to a temporary memory map in
    ``folder`` and is labelled in slabs of about ``slab_voxels`` voxels: each by ``cc3d``, then the
    pieces that touch across slab faces are joined (union-find) and renumbered — the same
    labels as in one piece, while only one slab's labels are in memory and the file is
    written back as it goes.
    """
    mask = np.asarray(mask, dtype=bool)
    if memory_limit_bytes is None or mask.size * 4 <= memory_limit_bytes:
        labels = cc3d.connected_components(mask, connectivity=6, out_dtype=np.uint32)
        return labels.view(np.int32)  # ids stay far below 2**31: same bits, no copy
    out = work_array(mask.shape, np.int32, memory_limit_bytes=0, folder=folder)
    planes = max(2, slab_voxels // (mask.shape[1] * mask.shape[2]))
    parent = [0]  # provisional id → a smaller id of the same component
    pairs = []
    last = None  # the previous slab's last plane, in provisional ids
    for k in range(0, mask.shape[0], planes):
        slab, n = cc3d.connected_components(
            mask[k : k + planes], connectivity=6, out_dtype=np.uint32, return_N=True
        )
        slab = slab.astype(np.int32)
        slab[slab > 0] += len(parent) - 1
        parent.extend(range(len(parent), len(parent) + n))
        if last is not None:
            touch = (last > 0) & (slab[0] > 0)
            pairs.append(np.unique(np.stack([last[touch], slab[0][touch]], 1), axis=0))
        last = slab[-1].copy()
        out[k : k + planes] = slab
        release_pages(out)
    parent = np.asarray(parent, np.int64)
    for a, b in np.concatenate(pairs) if pairs else ():
        ra, rb = _root(parent, a), _root(parent, b)
        parent[max(ra, rb)] = min(ra, rb)  # the root is the set's smallest, i.e. first, id
    while True:  # flatten: every id points at its root
        flat = parent[parent]
        if np.array_equal(flat, parent):
            break
        parent = flat
    # roots in increasing order are the components in order of first appearance
    lut = np.searchsorted(np.unique(parent[1:]), parent).astype(np.int32) + 1
    lut[0] = 0
    return map_slabs(lut.take, out, out, planes=planes)


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return int(i)


def label_vesicles(
    mask: np.ndarray,
    voxel_size_nm: float,
    *,
    min_radius_nm: float = 12.0,
    split: bool | str = "watershed",
    probability: np.ndarray | None = None,
    memory_limit_bytes: int | None = None,
    folder: str | os.PathLike | None = None,
) -> np.ndarray:
    """Label the vesicles of a binary mask, splitting touching ones.

    Parameters
    ----------
    mask : numpy.ndarray, bool, shape (z, y, x)
    voxel_size_nm : float
    min_radius_nm : float
        Smallest vesicle radius. Watershed: seeds closer than this are one vesicle, and
        regions whose inscribed sphere is smaller than half of it get no seed of their own.
        Threshold: a piece must hold the volume of a ball of half this radius.
    split : {"watershed", "threshold", "none"} or bool
        How merged vesicles are split (see the module notes); ``True`` means
        ``"watershed"``, ``False`` means ``"none"`` (components only).
    probability : numpy.ndarray, float, shape (z, y, x), optional
        The probability map the mask was thresholded from; needed by ``"threshold"``.
    memory_limit_bytes : int, optional
        A label volume larger than this is kept in a temporary memory-mapped file in
        ``folder``; by default it is kept in memory.

    Returns
    -------
    numpy.ndarray, int32, shape (z, y, x)
        0 = background, 1 … n one id per vesicle, in order of first appearance.
    """
    method = {True: "watershed", False: "none"}.get(split, split)
    if method not in SPLIT_METHODS:
        raise ParameterError(f"split must be one of {SPLIT_METHODS}, not {split!r}")
    if method == "threshold" and probability is None:
        raise ParameterError("split='threshold' needs the probability map")
    labels = connected_components(mask, memory_limit_bytes=memory_limit_bytes, folder=folder)
    boxes = ndimage.find_objects(labels)
    release_pages(labels)
    if method == "none" or not boxes:
        return labels
    min_radius_vox = min_radius_nm / voxel_size_nm
    # The labels are split in place, one bounding box at a time (no second volume): the
    # pieces of a split component get temporary ids above the last component's, and one
    # look-up table renumbers everything in order at the end.
    lut = np.zeros(len(boxes) + 1, np.int32)
    extra: list[int] = []  # final ids of the temporary ids len(boxes) + 1, …
    next_id = 1
    for component, box in enumerate(boxes, start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        crop = labels[box]
        region = crop == component
        if method == "watershed":
            parts = _split_watershed(region, min_radius_vox)
        else:
            parts = _split_threshold(region, np.asarray(probability[box]), min_radius_vox)
        pieces = int(parts.max())
        lut[component] = next_id
        if pieces > 1:
            values = parts[region]
            first_temp = len(boxes) + 1 + len(extra)
            crop[region] = np.where(values <= 1, component, first_temp + values - 2)
            extra.extend(range(next_id + 1, next_id + pieces))
        next_id += max(pieces, 1)
        if component % 256 == 0:
            release_pages(labels)
    lut = np.concatenate([lut, np.asarray(extra, np.int32)])
    return map_slabs(lut.take, labels, labels)
