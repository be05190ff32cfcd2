"""Straight-path density test of two boundaries: is there a filament across their gap?

Hierarchical thresholding (:mod:`.filaments`) takes any dark piece that touches two
boundaries. In a gap of a few voxels, noise alone makes such pieces somewhere around the
vesicles' contact — the more positions, the surer one of them is dark — while a real
filament is a dark line *across* the gap. This test looks only along straight paths
across it: parallel to the line of closest approach (two vesicles: their centre line; a
vesicle and the AZ: the membrane's normal below the vesicle), offset from it by up to
``search_vox`` in one-voxel steps, each from surface to surface. The mean grey value along
a path averages the noise of every voxel it crosses, as a filament's own density would be;
the darkest path is the pair's score. All positions in voxels (z, y, x).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from analysis.io.rasterise import plane_basis

#: Spacing of the samples along a path (voxels).
STEP_VOX = 0.5


def disc_offsets(normal: np.ndarray, search_vox: float) -> np.ndarray:
    """Points of the one-voxel grid on the disc of radius ``search_vox`` normal to ``normal``.

    Returns an (n, 3) array, (0, 0, 0) first.
    """
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    e1, e2 = plane_basis(normal)
    reach = int(np.floor(search_vox))
    grid = [
        (i, j)
        for i in range(-reach, reach + 1)
        for j in range(-reach, reach + 1)
        if i * i + j * j <= search_vox**2 + 1e-9
    ]
    grid.sort(key=lambda ij: ij[0] ** 2 + ij[1] ** 2)
    return np.array([i * e1 + j * e2 for i, j in grid]).reshape(-1, 3)


def _crossing(centre, radius, point, direction, leaving: bool):
    """t where point + t·direction (unit) leaves (or enters) the sphere; None if it misses."""
    w = point - centre
    b = float(w @ direction)
    disc = b * b - float(w @ w) + radius * radius
    if disc < 0:
        return None
    return -b + np.sqrt(disc) if leaving else -b - np.sqrt(disc)


def sample_along(values: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``values`` sampled every :data:`STEP_VOX` from ``start`` to ``end`` (voxels, z, y, x;
    linear interpolation, both ends included)."""
    n = max(int(np.ceil(np.linalg.norm(end - start) / STEP_VOX)) + 1, 2)
    points = start + np.linspace(0.0, 1.0, n)[:, None] * (end - start)
    return ndimage.map_coordinates(values, points.T, order=1, mode="nearest")


def mean_along(values: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Mean of :func:`sample_along`."""
    return float(sample_along(values, start, end).mean())


def connector_paths(centre_a, radius_a, centre_b, radius_b, search_vox: float) -> list:
    """Straight paths across the gap between two spheres: (start, end) on their surfaces."""
    centre_a, centre_b = np.asarray(centre_a, float), np.asarray(centre_b, float)
    axis = centre_b - centre_a
    u = axis / np.linalg.norm(axis)
    paths = []
    for offset in disc_offsets(u, search_vox):
        origin = centre_a + offset
        t0 = _crossing(centre_a, radius_a, origin, u, leaving=True)
        t1 = _crossing(centre_b, radius_b, origin, u, leaving=False)
        if t0 is not None and t1 is not None and t1 > t0:
            paths.append((origin + t0 * u, origin + t1 * u))
    return paths


def tether_paths(
    centre, radius, az_distance_vox: np.ndarray, search_vox: float, max_length_vox: float
) -> list:
    """Straight paths from a sphere's surface to the AZ membrane: (start, end) pairs.

    They run down the membrane's distance gradient at the sphere's centre and end at the
    first sample within one voxel of the membrane; a path that does not reach it within
    ``max_length_vox`` is left out.
    """
    centre = np.asarray(centre, float)
    grad = np.array(
        [
            ndimage.map_coordinates(
                az_distance_vox, np.array([centre + e, centre - e]).T, order=1, mode="nearest"
            ).dot([0.5, -0.5])
            for e in np.eye(3)
        ]
    )
    if not np.any(grad):
        return []
    down = -grad / np.linalg.norm(grad)
    steps = np.arange(0.0, max_length_vox + STEP_VOX, STEP_VOX)
    paths = []
    for offset in disc_offsets(down, search_vox):
        origin = centre + offset
        t0 = _crossing(centre, radius, origin, down, leaving=True)
        if t0 is None:
            continue
        start = origin + t0 * down
        points = start + steps[:, None] * down
        d = ndimage.map_coordinates(az_distance_vox, points.T, order=1, mode="nearest")
        reached = np.flatnonzero(d <= 1.0)
        if len(reached):
            paths.append((start, points[reached[0]]))
    return paths


def darkest_path(values: np.ndarray, paths: list) -> tuple[float, int]:
    """The lowest mean of ``values`` along ``paths`` and its index; (inf, -1) for none."""
    means = [mean_along(values, a, b) for a, b in paths]
    if not means:
        return float("inf"), -1
    k = int(np.argmin(means))
    return means[k], k
