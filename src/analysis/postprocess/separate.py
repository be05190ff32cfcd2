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

import cc3d
import edt
import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

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


def label_vesicles(
    mask: np.ndarray,
    voxel_size_nm: float,
    *,
    min_radius_nm: float = 12.0,
    split: bool | str = "watershed",
    probability: np.ndarray | None = None,
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

    Returns
    -------
    numpy.ndarray, int32, shape (z, y, x)
        0 = background, 1 … n one id per vesicle, in order of first appearance.
    """
    method = {True: "watershed", False: "none"}.get(split, split)
    if method not in SPLIT_METHODS:
        raise ValueError(f"split must be one of {SPLIT_METHODS}, not {split!r}")
    if method == "threshold" and probability is None:
        raise ValueError("split='threshold' needs the probability map")
    mask = np.asarray(mask, dtype=bool)
    labels = cc3d.connected_components(mask, connectivity=6).astype(np.int32)
    if method == "none" or labels.max() == 0:
        return labels
    min_radius_vox = min_radius_nm / voxel_size_nm
    out = np.zeros_like(labels)
    next_id = 1
    for component, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region = labels[box] == component
        if method == "watershed":
            parts = _split_watershed(region, min_radius_vox)
        else:
            parts = _split_threshold(region, np.asarray(probability[box]), min_radius_vox)
        out[box][region] = parts[region] + next_id - 1
        next_id += int(parts.max())
    return out
