"""Turn IMOD point tables into label volumes, as IMOD's ``imodmop`` would.

- closed contours (one outline per slice per vesicle, the usual manual SV segmentation) are
  filled as polygons in their slice and grouped into vesicles;
- scattered points with a sphere size (IMOD's way to mark a centre and a radius) become balls;
- open contours (e.g. a plasma membrane traced slice by slice) become a thin sheet, returned as a
  separate mask.

All arrays are (z, y, x); the point tables come from :func:`analysis.io.read_imod_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.draw import line_nd, polygon

from analysis.errors import ParameterError

GROUPINGS = ("auto", "object", "surface", "overlap")


@dataclass
class _Outline:
    """One closed contour filled in its slice."""

    key: tuple[int, int]  # (object_id, surface)
    z: int
    rows: np.ndarray
    cols: np.ndarray


def _fill_outline(contour: pd.DataFrame, shape) -> tuple[int, np.ndarray, np.ndarray]:
    z = int(np.rint(contour["z_vox"].mean()))
    y = contour["y_vox"].to_numpy(dtype=np.float64, copy=True)  # skimage needs writable
    x = contour["x_vox"].to_numpy(dtype=np.float64, copy=True)
    rows, cols = polygon(y, x, shape=shape[1:])
    if rows.size == 0:
        # A contour too small to enclose a voxel centre still marks the voxels it passes through.
        rows = np.clip(np.rint(y).astype(int), 0, shape[1] - 1)
        cols = np.clip(np.rint(x).astype(int), 0, shape[2] - 1)
    return z, rows, cols


def _group_by_overlap(outlines: list[_Outline], max_slice_gap: int) -> np.ndarray:
    """Connected groups of outlines whose fills overlap in slices at most ``max_slice_gap`` apart."""
    n = len(outlines)
    flat = [set((o.rows * 100003 + o.cols).tolist()) for o in outlines]
    by_z: dict[int, list[int]] = {}
    for i, o in enumerate(outlines):
        by_z.setdefault(o.z, []).append(i)
    src, dst = [], []
    for i, o in enumerate(outlines):
        for dz in range(1, max_slice_gap + 1):
            for j in by_z.get(o.z + dz, []):
                if not flat[i].isdisjoint(flat[j]):
                    src.append(i)
                    dst.append(j)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    return group


def _vesicle_groups(outlines: list[_Outline], grouping: str, max_slice_gap: int) -> np.ndarray:
    """A vesicle index for every outline."""
    if grouping not in GROUPINGS:
        raise ParameterError(f"grouping must be one of {GROUPINGS}, not {grouping!r}")
    keys = [(o.key[0],) if grouping == "object" else o.key for o in outlines]
    if grouping == "overlap":
        return _group_by_overlap(outlines, max_slice_gap)
    index_of: dict[tuple, int] = {}
    group = np.array([index_of.setdefault(k, len(index_of)) for k in keys])
    if grouping == "auto":
        # Objects (or surfaces) that hold one outline per slice are one vesicle each; a group
        # with two outlines in one slice holds several vesicles, split by overlap.
        out = np.empty(len(outlines), dtype=np.int64)
        next_id = 0
        for g in np.unique(group):
            members = np.flatnonzero(group == g)
            zs = [outlines[i].z for i in members]
            if len(set(zs)) == len(zs):
                out[members] = next_id
                next_id += 1
            else:
                sub = _group_by_overlap([outlines[i] for i in members], max_slice_gap)
                out[members] = next_id + sub
                next_id += int(sub.max()) + 1
        return out
    return group


def points_to_labels(
    points: pd.DataFrame,
    shape: tuple[int, int, int],
    *,
    grouping: str = "auto",
    max_slice_gap: int = 1,
) -> np.ndarray:
    """Label volume with one integer id per vesicle from closed contours and scattered points.

    Parameters
    ----------
    points : pandas.DataFrame
        Point table from :func:`analysis.io.read_imod_model` (voxel coordinates of the target).
    shape : tuple of int
        Output shape (z, y, x).
    grouping : {"auto", "object", "surface", "overlap"}
        How closed contours are grouped into vesicles: one per IMOD object, one per surface
        number within an object, or by overlap of their fills in consecutive slices. ``"auto"``
        takes one vesicle per object and surface, and splits a group by overlap where it holds
        two outlines in the same slice.
    max_slice_gap : int
        With overlap grouping, outlines up to this many slices apart may join (1 = adjacent
        slices only, as when every slice was drawn).

    Returns
    -------
    numpy.ndarray, shape (z, y, x), int32
        0 = background; vesicles numbered 1…n, closed-contour vesicles first (ordered by their
        group), then one per scattered point in table order.
    """
    labels = np.zeros(shape, dtype=np.int32)
    closed = points[points["kind"] == "closed"]
    outlines = []
    for (obj, _contour), contour in closed.groupby(["object_id", "contour_id"], sort=True):
        z, rows, cols = _fill_outline(contour, shape)
        if 0 <= z < shape[0]:
            outlines.append(_Outline((int(obj), int(contour["surface"].iloc[0])), z, rows, cols))
    next_id = 1
    if outlines:
        group = _vesicle_groups(outlines, grouping, max_slice_gap)
        for o, g in zip(outlines, group, strict=True):
            labels[o.z, o.rows, o.cols] = next_id + g
        next_id += int(group.max()) + 1
    scattered = points[points["kind"] == "scattered"]
    for centre, radius in zip(
        scattered[["z_vox", "y_vox", "x_vox"]].to_numpy(),
        scattered["radius_vox"].to_numpy(),
        strict=True,
    ):
        paint_ball(labels, centre, float(radius) if np.isfinite(radius) else 0.0, next_id)
        next_id += 1
    return labels


def ball_box(centre, reach, shape) -> tuple[slice, ...]:
    """The box of the voxels within ``reach`` of ``centre`` along each axis, inside ``shape``.

    Parameters
    ----------
    centre : array-like of float, (z, y, x)
        In voxels.
    reach : float or array-like of float
        Half the box's edge in voxels (one value, or one per axis).
    shape : tuple of int
        The volume's shape; the box is clipped to it.

    Returns
    -------
    tuple of slice
        From ``floor(centre - reach)`` to ``ceil(centre + reach)``, both included; empty
        slices (stop ≤ start) where the box lies outside the volume.
    """
    centre = np.asarray(centre, dtype=float)
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def is_empty(box: tuple[slice, ...]) -> bool:
    """Whether a box of :func:`ball_box` holds no voxel (it lies outside the volume)."""
    return any(s.stop <= s.start for s in box)


def plane_basis(normal) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal vectors spanning the plane normal to the unit vector ``normal``.

    ``normal`` is (z, y, x); with it they form a right-handed basis (``e2 = normal × e1``).
    """
    e1 = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[2]) < 0.9 else [0.0, 1.0, 0.0])
    if np.linalg.norm(e1) < 1e-6:  # normal along z: the cross product above vanishes
        e1 = np.cross(normal, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(normal, e1)


def paint_ball(labels: np.ndarray, centre: np.ndarray, radius: float, value: int) -> None:
    """Set every voxel whose centre lies within ``radius`` of ``centre`` (z, y, x) to ``value``."""
    box = ball_box(centre, radius, labels.shape)
    if is_empty(box):
        return
    d2 = sum((g - c) ** 2 for g, c in zip(np.ogrid[box], centre, strict=True))
    labels[box][d2 <= radius**2 + 1e-9] = value


def points_to_sheet(
    points: pd.DataFrame, shape: tuple[int, int, int], *, thickness_vox: int = 1
) -> np.ndarray:
    """Mask of the open contours (e.g. a membrane traced slice by slice), as connected lines.

    Parameters
    ----------
    points : pandas.DataFrame
        Point table from :func:`analysis.io.read_imod_model`.
    shape : tuple of int
        Output shape (z, y, x).
    thickness_vox : int
        Thickness of the sheet in voxels, odd (1 = the traced lines themselves).

    Returns
    -------
    numpy.ndarray, shape (z, y, x), bool
    """
    mask = np.zeros(shape, dtype=bool)
    open_pts = points[points["kind"] == "open"]
    for _, contour in open_pts.groupby(["object_id", "contour_id"], sort=True):
        zyx = contour.sort_values("point_id")[["z_vox", "y_vox", "x_vox"]].to_numpy()
        if len(zyx) == 1:
            zyx = np.vstack([zyx, zyx])
        for a, b in zip(zyx[:-1], zyx[1:], strict=True):
            idx = line_nd(a, b, endpoint=True, integer=True)
            keep = np.all([(i >= 0) & (i < n) for i, n in zip(idx, shape, strict=True)], axis=0)
            mask[tuple(i[keep] for i in idx)] = True
    if thickness_vox > 1:
        mask = ndimage.binary_dilation(mask, iterations=(thickness_vox - 1) // 2)
    return mask
