"""Connectors and tethers: the densities that join vesicles to each other and to the AZ.

Pyto's hierarchical connectivity segmentation, re-implemented on numpy and cc3d. The region
between the boundaries (vesicles and the active-zone membrane) is thresholded at a rising
series of grey values — densities are dark, so voxels *below* the threshold are taken — and
each threshold's connected pieces form one level of a hierarchy: a piece at one threshold
lies inside one piece at the next. A piece is a filament when it touches at least two
boundaries and its volume stays under a limit (Pyto's papers use 2100–3200 nm³). Each branch
of the hierarchy gives the piece at the threshold where it first joins its boundaries — the
darkest, tightest version, whose volume and length are the filament's, not those of the noise
around it — and a piece that holds a filament found earlier is not taken again, so two
filaments that fuse at a brighter threshold stay two. A filament between two vesicles is a
*connector*, one between a vesicle and the AZ membrane a *tether*.

Boundaries are widened by ``contact_nm`` before contacts are looked for: the CTF rings a
membrane with a light fringe a voxel wide, which would otherwise cut every filament off the
membrane it starts from.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import edt
import numpy as np
import pandas as pd
from scipy import ndimage

#: Columns of the filament table; ``vesicle_b`` is 0 for the AZ membrane (tethers).
FILAMENT_COLUMNS = [
    "filament_id",
    "kind",
    "vesicle_a",
    "vesicle_b",
    "n_boundaries",
    "threshold",
    "mean_grey",
    "volume_nm3",
    "length_nm",
    "z_vox",
    "y_vox",
    "x_vox",
]
#: Default thresholds, in standard deviations of the tomogram in the analysed region.
DEFAULT_THRESHOLDS = tuple(np.round(np.arange(-3.0, -1.45, 0.1), 2))


@dataclass
class Filaments:
    """Result of :func:`find_filaments`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per filament (:data:`FILAMENT_COLUMNS`).
    labels : numpy.ndarray, int32, shape (z, y, x)
        Filament voxels labelled by ``filament_id``.
    per_vesicle : pandas.DataFrame
        ``vesicle_id, n_connectors, n_tethers`` for every vesicle of the input labels.
    """

    table: pd.DataFrame
    labels: np.ndarray
    per_vesicle: pd.DataFrame


def _contacts(pieces: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(piece, boundary) pairs that are 6-neighbours, unique."""
    found = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        for a, b in ((tuple(lo), tuple(hi)), (tuple(hi), tuple(lo))):
            p, q = pieces[a], boundaries[b]
            hit = (p > 0) & (q > 0)
            found.append(np.column_stack([p[hit], q[hit]]))
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _contact_centres(voxels: np.ndarray, boundaries: np.ndarray, shape) -> dict[int, np.ndarray]:
    """Centroid of the piece's voxels next to each boundary it touches, by boundary id."""
    zyx = np.column_stack(np.unravel_index(voxels, shape))
    centres = {}
    for step in np.vstack([np.eye(3, dtype=int), -np.eye(3, dtype=int)]):
        n = np.clip(zyx + step, 0, np.array(shape) - 1)
        ids = boundaries[tuple(n.T)]
        for b in np.unique(ids[ids > 0]):
            centres.setdefault(int(b), []).append(zyx[ids == b])
    return {b: np.concatenate(v).mean(axis=0) for b, v in centres.items()}


def remove_boundary_profiles(
    tomogram: np.ndarray,
    vesicle_labels: np.ndarray,
    az_mask: np.ndarray,
    *,
    reach_vox: float = 10.0,
    bin_vox: float = 0.5,
    n_polar: int = 4,
    az_distance_vox: np.ndarray | None = None,
) -> np.ndarray:
    """The tomogram minus the image of every vesicle and of the AZ membrane.

    A membrane is imaged with a blur and the CTF's rings around it, and in the narrow gap
    between two vesicles the two blurs add up to a dark bridge that looks like a connector.
    Imaging is linear, so each vesicle's own image is estimated by its mean density at each
    distance from its centre — in ``n_polar`` bands of polar angle, because the missing wedge
    makes a vesicle look different at its poles than at its equator — out to ``reach_vox``
    voxels beyond its edge, and the membrane's by the mean density at each distance from it.
    Subtracting these leaves what is *not* symmetric about a boundary, filaments among it.
    ``az_distance_vox`` is the membrane's distance map in voxels, if already computed.

    Returns a float32 volume of the tomogram's shape.
    """
    from analysis.io import label_table

    values = np.asarray(tomogram, dtype=np.float32)
    out = values.copy()
    table = label_table(np.asarray(vesicle_labels).astype(np.int64), 1.0)
    shape = np.array(values.shape)
    for row in table.itertuples():
        centre = np.array([row.z_vox, row.y_vox, row.x_vox])
        outer = row.radius_vox + reach_vox
        lo = np.maximum(np.floor(centre - outer).astype(int), 0)
        hi = np.minimum(np.ceil(centre + outer).astype(int) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        z, y, x = np.ogrid[box]
        r = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
        polar = np.abs(z - centre[0]) / np.maximum(r, 1e-6)
        band = np.minimum((polar * n_polar).astype(int), n_polar - 1)
        inside = r <= outer
        index = ((r[inside] / bin_vox).astype(int) * n_polar + band[inside]).ravel()
        # every band of every shell, also where the tomogram's border cuts the box
        size = (int(outer / bin_vox) + 1) * n_polar
        sums = np.bincount(index, values[box][inside].astype(np.float64), minlength=size)
        counts = np.bincount(index, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            profile = (sums / counts).reshape(-1, n_polar)  # NaN: a shell with no voxel
        # its far end is the local background, which stays: the last 3 shells with voxels
        for k in range(n_polar):
            seen = profile[:, k][np.isfinite(profile[:, k])]
            if len(seen):  # (a band without voxels is never looked up)
                profile[:, k] -= seen[-4:-1].mean() if len(seen) > 3 else seen[-1]
        out[box][inside] -= profile.ravel()[index].astype(np.float32)
    distance = az_distance_vox
    if distance is None:
        distance = edt.edt(~np.asarray(az_mask, bool), black_border=False, parallel=1)
    near = distance <= reach_vox
    index = (distance[near] / bin_vox).astype(int)
    profile = np.bincount(index, values[near].astype(np.float64))
    profile /= np.maximum(np.bincount(index, minlength=len(profile)), 1)
    profile -= profile[-3:].mean()
    out[near] -= profile[index].astype(np.float32)
    return out


def _nearest_voxel(labels: np.ndarray, point: np.ndarray, label: int, reach: int) -> np.ndarray:
    """The voxel of ``label`` nearest to ``point`` within ``reach`` voxels (else ``point``)."""
    lo = np.maximum(np.floor(point).astype(int) - reach, 0)
    hi = np.minimum(np.ceil(point).astype(int) + reach + 1, labels.shape)
    box = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    where = np.argwhere(box == label) + lo
    if not len(where):
        return point
    return where[np.argmin(np.linalg.norm(where - point, axis=1))].astype(float)


def find_filaments(
    tomogram: np.ndarray,
    vesicle_labels: np.ndarray,
    az_mask: np.ndarray,
    region_mask: np.ndarray,
    voxel_size_nm: float,
    *,
    thresholds=DEFAULT_THRESHOLDS,
    max_volume_nm3: float = 2600.0,
    max_distance_nm: float = 25.0,
    smooth_nm: float = 2.2,
    contact_nm: float = 2.2,
    subtract_boundaries: bool = True,
    az_distance_vox: np.ndarray | None = None,
) -> Filaments:
    """Connectors and tethers by hierarchical thresholding (see the module notes).

    Parameters
    ----------
    tomogram : numpy.ndarray, shape (z, y, x)
        Densities dark (as reconstructed).
    vesicle_labels : numpy.ndarray, int, shape (z, y, x)
        Vesicles as whole spheres, one id each (e.g. ``STEM_labels.mrc``).
    az_mask : numpy.ndarray of bool, shape (z, y, x)
        The active-zone membrane.
    region_mask : numpy.ndarray of bool, shape (z, y, x)
        The cytoplasm to analyse (vesicles and membrane inside it are left out).
    voxel_size_nm : float
    thresholds : sequence of float
        Grey-value thresholds in standard deviations from the mean of the analysed region,
        rising; voxels darker than a threshold are taken.
    max_volume_nm3 : float
        Largest filament volume (Pyto's papers: 2100–3200 nm³).
    max_distance_nm : float
        Only voxels this close to a vesicle are analysed (filament length limit).
    smooth_nm : float
        Standard deviation (nm) of the Gaussian the tomogram is smoothed with first, so that
        voxel noise does not break a filament or bridge two vesicles; 0 = none.
    contact_nm : float
        Boundaries are widened by this much (see the module notes); 0 = exact contact.
    subtract_boundaries : bool
        Remove the vesicles' and the membrane's own images first
        (:func:`remove_boundary_profiles`); thresholds then refer to the remainder.
    az_distance_vox : numpy.ndarray, optional
        The AZ membrane's distance map in voxels, if already computed.

    Returns
    -------
    Filaments
    """
    shape = np.shape(tomogram)
    vesicle_labels = np.asarray(vesicle_labels).astype(np.int64)
    az_mask = np.asarray(az_mask, dtype=bool)
    if vesicle_labels.shape != shape or az_mask.shape != shape:
        raise ValueError("tomogram, vesicle labels and AZ mask differ in shape")
    az_id = int(vesicle_labels.max()) + 1
    boundaries = vesicle_labels.copy()
    boundaries[az_mask] = az_id
    exact = boundaries
    if contact_nm > 0:
        from skimage.segmentation import expand_labels

        boundaries = expand_labels(boundaries, contact_nm / voxel_size_nm)
    near = edt.edt(vesicle_labels == 0, black_border=False, parallel=1) <= (
        max_distance_nm / voxel_size_nm
    )
    region = np.asarray(region_mask, dtype=bool) & (boundaries == 0) & near
    if not region.any():
        raise ValueError("no region voxel lies near a vesicle: nothing to analyse")
    values = np.asarray(tomogram, dtype=np.float32)
    if subtract_boundaries:
        values = remove_boundary_profiles(
            values, vesicle_labels, az_mask, az_distance_vox=az_distance_vox
        )
    if smooth_nm > 0:
        values = ndimage.gaussian_filter(values, smooth_nm / voxel_size_nm)
    grey = (values - values[region].mean()) / (values[region].std() + 1e-12)
    max_volume_vox = max_volume_nm3 / voxel_size_nm**3

    selected: list[dict] = []  # each: voxels (flat, sorted), boundaries, threshold
    for level in sorted(thresholds):
        pieces = cc3d.connected_components(region & (grey < level), connectivity=6)
        if pieces.max() == 0:
            continue
        flat = pieces.ravel()
        sizes = np.bincount(flat)
        # voxels of every piece at once: flat indices sorted by piece
        taken = np.flatnonzero(flat)
        order = taken[np.argsort(flat[taken], kind="stable")]
        start = np.concatenate([[0], np.cumsum(sizes[1:])])
        touching: dict[int, set] = {}
        for piece, b in _contacts(pieces, boundaries):
            touching.setdefault(int(piece), set()).add(int(b))
        # The earlier filaments inside each piece (pieces only grow with the threshold).
        inside: dict[int, list[int]] = {}
        for k, fil in enumerate(selected):
            inside.setdefault(int(pieces.flat[fil["voxels"][0]]), []).append(k)
        added = []
        for piece, bset in touching.items():
            if len(bset) < 2 or sizes[piece] > max_volume_vox or bset == {az_id}:
                continue
            children = inside.get(piece, [])
            if len(children) > 1:
                continue  # would merge filaments: keep them apart
            if children:
                continue  # already found at a darker threshold: keep that, the tighter one
            record = {
                "voxels": np.sort(order[start[piece - 1] : start[piece]]),
                "boundaries": bset,
                "threshold": float(level),
            }
            added.append(record)
        selected += added

    labels = np.zeros(shape, np.int32)
    rows = []
    for i, fil in enumerate(selected, start=1):
        labels.flat[fil["voxels"]] = i
        bset = sorted(fil["boundaries"])
        vesicles = [b for b in bset if b != az_id]
        kind = "tether" if az_id in fil["boundaries"] else "connector"
        a, b = (vesicles[0], 0) if kind == "tether" else (vesicles[0], vesicles[1])
        ends = _contact_centres(fil["voxels"], boundaries, shape)
        reach = int(np.ceil(contact_nm / voxel_size_nm)) + 2
        first = _nearest_voxel(exact, ends[a], a, reach)
        second = _nearest_voxel(
            exact, ends[az_id if kind == "tether" else b], az_id if kind == "tether" else b, reach
        )
        centre = np.column_stack(np.unravel_index(fil["voxels"], shape)).mean(axis=0)
        rows.append(
            {
                "filament_id": i,
                "kind": kind,
                "vesicle_a": a,
                "vesicle_b": b,
                "n_boundaries": len(bset),
                "threshold": fil["threshold"],
                "mean_grey": float(grey.flat[fil["voxels"]].mean()),
                "volume_nm3": len(fil["voxels"]) * voxel_size_nm**3,
                # between the facing surfaces of the two boundary voxels: one voxel less
                "length_nm": max(np.linalg.norm(first - second) - 1.0, 0.0) * voxel_size_nm,
                "z_vox": centre[0],
                "y_vox": centre[1],
                "x_vox": centre[2],
            }
        )
    table = pd.DataFrame(rows, columns=FILAMENT_COLUMNS)
    return Filaments(table, labels, count_per_vesicle(table, vesicle_labels))


def count_per_vesicle(table: pd.DataFrame, vesicle_labels: np.ndarray) -> pd.DataFrame:
    """Number of connectors and tethers of every vesicle (0 for those without)."""
    ids = np.unique(vesicle_labels)
    ids = ids[ids > 0]
    connectors = table[table["kind"] == "connector"]
    tethers = table[table["kind"] == "tether"]
    n_conn = pd.concat([connectors["vesicle_a"], connectors["vesicle_b"]]).value_counts()
    n_teth = tethers["vesicle_a"].value_counts()
    return pd.DataFrame(
        {
            "vesicle_id": ids,
            "n_connectors": n_conn.reindex(ids, fill_value=0).to_numpy(),
            "n_tethers": n_teth.reindex(ids, fill_value=0).to_numpy(),
        }
    )
