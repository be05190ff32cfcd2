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

Noise alone makes dark pieces that touch two close boundaries somewhere around their contact.
So, beyond Pyto, each pair of boundaries joined by a piece is tested along straight paths
across its gap (:mod:`.paths`), and its pieces are kept only when the darkest path is dark
enough (``max_path_grey``; by default a cut per kind that follows the tomogram's membrane
contrast, :mod:`.cuts`).

One row of the table is one filament as Pyto's users count it: one density that joins two
boundaries. The hierarchy often finds several pieces between the same two boundaries — apart
at their darkest threshold, each touching both — and they are merged: the pieces of one pair
that lie within ``merge_nm`` of each other are one filament (``n_pieces`` says how many,
``piece_gap_nm`` the widest gap bridged), by default every piece of a pair. The default is
measured: on generated tomograms, which put at most one filament across a gap, three in four
true connectors found come in several pieces, up to 23 nm apart (median of the widest gap
7.5 nm; tethers: two in three, up to 28 nm, median 10.6 nm) — spread over the whole contact
zone of the two boundaries, so no smaller distance tells a fragment from a second filament
at that resolution; and the straight-path test judges the pair, not the piece. Counted by
piece, vesicles had 2.8 times their true connectors and 2.5 times their tethers
(``benchmarks/filament_detection.py``: calibration seeds 501–508, generator version 3 at its
default imaging). A finite ``merge_nm`` counts pieces farther apart as filaments of their
own.

Each filament's ``angle_to_beam_deg`` is the angle between the line joining its two contacts
and the z axis (the beam): 0° along the beam, 90° across it. The missing wedge blurs a
filament across the beam most, so that fewer are found there (on generated tomograms, true
connectors within 30° of the beam 95 %, beyond 60° 59 %: ``benchmarks/filament_detection.py``);
tethers follow the AZ membrane's normal, so their angle says how the synapse lies in the ice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cc3d
import edt
import numpy as np
import pandas as pd
from scipy import ndimage

from analysis.errors import DataError
from analysis.io.rasterise import ball_box

from .cuts import membrane_contrast, resolve_cuts

#: Columns of the filament table; ``vesicle_b`` is 0 for the AZ membrane (tethers).
FILAMENT_COLUMNS = [
    "filament_id",
    "kind",
    "vesicle_a",
    "vesicle_b",
    "n_boundaries",
    "n_pieces",
    "piece_gap_nm",
    "threshold",
    "mean_grey",
    "path_grey",
    "volume_nm3",
    "length_nm",
    "angle_to_beam_deg",
    "z_vox",
    "y_vox",
    "x_vox",
    "path_cut",
]
#: Default thresholds, in standard deviations of the tomogram in the analysed region.
DEFAULT_THRESHOLDS = tuple(np.round(np.arange(-3.0, -0.95, 0.1), 2))
#: Default straight-path cuts: per kind, from the tomogram's membrane contrast (:mod:`.cuts`).
#: Tethers get a looser cut: a true tether's darkest path comes out about 0.5 SD lighter than
#: a true connector's, while pairs without a filament differ little by kind. Tethers run along
#: the tilt axis (y), and lines along it come out faintest: in noise-free reconstructions of
#: the generated filaments, −1.1 SD along y against −1.4 SD for connectors on average.
DEFAULT_MAX_PATH_GREY = "auto"
#: Default gap up to which pieces of one pair are one filament: all of them (module notes).
DEFAULT_MERGE_NM = float("inf")


@dataclass
class Filaments:
    """Result of :func:`find_filaments`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per filament (:data:`FILAMENT_COLUMNS`), its pieces merged (``n_pieces``).
    labels : numpy.ndarray, int32, shape (z, y, x)
        Filament voxels labelled by ``filament_id``.
    per_vesicle : pandas.DataFrame
        ``vesicle_id, n_connectors, n_connected_vesicles, n_tethers`` for every vesicle of
        the input labels (:func:`count_per_vesicle`).
    membrane_contrast : float
        How dark the vesicle membranes are, in SD of the remainder
        (:func:`analysis.active_zone.cuts.membrane_contrast`).
    path_cuts : dict or None
        The straight-path cut applied to each kind (SD), None without the test.
    """

    table: pd.DataFrame
    labels: np.ndarray
    per_vesicle: pd.DataFrame
    membrane_contrast: float
    path_cuts: dict | None


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
    voxel_size_nm: float,
    *,
    reach_nm: float = 22.0,
    bin_vox: float = 0.5,
    n_wedge_bands: int = 4,
    n_axis_bands: int = 2,
    az_distance_vox: np.ndarray | None = None,
    vesicle_table: pd.DataFrame | None = None,
    region_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The tomogram minus the image of every vesicle and of the AZ membrane.

    A membrane is imaged with a blur and the CTF's rings around it, and in the narrow gap
    between two vesicles the two blurs add up to a dark bridge that looks like a connector.
    Imaging is linear, so each vesicle's own image is estimated by its mean density at each
    distance from its centre, out to ``reach_nm`` beyond its edge, and the membrane's
    by the mean density at each distance from it. Subtracting these leaves what is *not*
    symmetric about a boundary, filaments among it.

    The mean is taken apart in bands of direction, because the missing wedge images a
    membrane by the direction of its normal: a tilt series about the y axis samples the
    Fourier directions within the tilt range of the x axis in the x–z plane, whatever their
    y component. So a direction (dz, dy, dx) from the centre is binned by its angle
    ``atan2(|dz|, |dx|)`` (``n_wedge_bands`` bands from 0° to 90°; directions past the tilt
    range lie in the wedge) and by ``|dy|`` (``n_axis_bands`` bands: a normal along the tilt
    axis is always sampled). Tomograms reconstructed by IMOD have their tilt axis along y.
    ``az_distance_vox`` is the membrane's distance map in voxels, and ``vesicle_table`` the
    :func:`analysis.io.label_table` of ``vesicle_labels`` in voxels, if already computed.

    The membrane's profile is measured once the vesicles' images are gone, and only on the
    membrane and in the cytoplasm: ``region_mask`` (the side of the membrane that holds the
    vesicles), outside the vesicles. Its two sides differ — the synaptic cleft and the postsynaptic membrane lie
    20–25 nm beyond it — and the vesicles near it are none of its image. Averaged over both
    sides and over the vesicles, the profile came out darker than the cytoplasm, and its
    subtraction lightened the cytoplasm 0–14 nm from the membrane by 0.15 SD of the
    remainder (0.8 SD once smoothed as :func:`find_filaments` smooths), where tethers are: on
    generated tomograms (version 3, seeds 501–508, default imaging) 23 % of the true tethers
    never came out dark enough to be found, against 3.5 % with the profile measured so.
    Without ``region_mask`` the profile is measured on both sides (outside the vesicles).

    ``reach_nm`` (22 nm: 10 voxels of 2.2 nm) is how far a boundary's image is followed;
    ``bin_vox`` is the width of its distance shells, a sampling step in voxels.

    Returns a float32 volume of the tomogram's shape.
    """
    from analysis.io import label_table

    reach_vox = reach_nm / voxel_size_nm
    values = np.asarray(tomogram, dtype=np.float32)
    out = values.copy()
    table = vesicle_table
    if table is None:
        table = label_table(np.asarray(vesicle_labels).astype(np.int64), 1.0)
    shape = np.array(values.shape)
    n_bands = n_wedge_bands * n_axis_bands
    for row in table.itertuples():
        centre = np.array([row.z_vox, row.y_vox, row.x_vox])
        outer = row.radius_vox + reach_vox
        box = ball_box(centre, outer, shape)
        z, y, x = np.ogrid[box]
        dz, dy, dx = np.abs(z - centre[0]), np.abs(y - centre[1]), np.abs(x - centre[2])
        r = np.sqrt(dz**2 + dy**2 + dx**2)
        wedge = np.arctan2(dz, dx) / (np.pi / 2)  # 0: along x, 1: along z
        axis = dy / np.maximum(r, 1e-6)
        band = np.minimum((wedge * n_wedge_bands).astype(int), n_wedge_bands - 1) * n_axis_bands
        band = band + np.minimum((axis * n_axis_bands).astype(int), n_axis_bands - 1)
        inside = r <= outer
        r_in, band_in = r[inside], np.broadcast_to(band, r.shape)[inside]
        index = (r_in / bin_vox).astype(int) * n_bands + band_in
        # every band of every shell, also where the tomogram's border cuts the box
        size = (int(outer / bin_vox) + 1) * n_bands
        sums = np.bincount(index, values[box][inside].astype(np.float64), minlength=size)
        r_sums = np.bincount(index, r_in, minlength=size)
        counts = np.bincount(index, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            profile = (sums / counts).reshape(-1, n_bands)  # NaN: a shell with no voxel
            at = (r_sums / counts).reshape(-1, n_bands)  # the shell's mean distance
        image = np.zeros(len(r_in), np.float32)
        for k in range(n_bands):
            seen = np.isfinite(profile[:, k])
            if not seen.any():  # (a band without voxels is never looked up)
                continue
            level = profile[seen, k]
            # its far end is the local background, which stays: the last 3 shells with voxels
            level = level - (level[-4:-1].mean() if len(level) > 3 else level[-1])
            # linear between the shells' mean distances: a membrane's edge is steep for bins
            mine = band_in == k
            image[mine] = np.interp(r_in[mine], at[seen, k], level)
        out[box][inside] -= image
    distance = az_distance_vox
    if distance is None:
        distance = edt.edt(~np.asarray(az_mask, bool), black_border=False, parallel=1)
    near = distance <= reach_vox
    # the membrane's image, measured in the cytoplasm once the vesicles' are gone (see above)
    sample = near & (np.asarray(vesicle_labels) == 0)
    if region_mask is not None:  # the membrane itself, and the cytoplasm on its vesicles' side
        sample &= np.asarray(region_mask, bool) | np.asarray(az_mask, bool)
    if not sample.any():  # no membrane within reach (or none at all): nothing to take off
        return out
    size = int(reach_vox / bin_vox) + 1
    index = (distance[sample] / bin_vox).astype(int)
    counts = np.bincount(index, minlength=size)
    seen = np.flatnonzero(counts)
    level = np.bincount(index, out[sample].astype(np.float64), minlength=size)[seen] / counts[seen]
    # its far end is the local background, which stays: the last 3 shells with voxels
    level -= level[-3:].mean()
    profile = np.interp(np.arange(size), seen, level)  # a shell without a voxel: between
    out[near] -= profile[(distance[near] / bin_vox).astype(int)].astype(np.float32)
    return out


def _nearest_voxel(labels: np.ndarray, point: np.ndarray, label: int, reach: int) -> np.ndarray:
    """The voxel of ``label`` nearest to ``point`` within ``reach`` voxels (else ``point``)."""
    box = ball_box(point, reach, labels.shape)
    where = np.argwhere(labels[box] == label) + [s.start for s in box]
    if not len(where):
        return point
    return where[np.argmin(np.linalg.norm(where - point, axis=1))].astype(float)


@dataclass
class SearchVolumes:
    """What :func:`find_filaments` thresholds and tests, prepared once (:func:`search_volumes`).

    Attributes
    ----------
    exact : numpy.ndarray, int64 (z, y, x)
        Vesicle ids and the AZ membrane (``az_id``) as given.
    boundaries : numpy.ndarray, int64 (z, y, x)
        The same, widened by ``contact_nm``.
    az_id : int
        The membrane's id in ``boundaries`` (one more than the largest vesicle id).
    region : numpy.ndarray, bool (z, y, x)
        The analysed voxels: in the region mask, outside the boundaries, near a vesicle.
    vesicle_table : pandas.DataFrame
        The vesicles' centres and radii in voxels (:func:`analysis.io.label_table`).
    az_distance_vox : numpy.ndarray, float (z, y, x)
        Distance to the AZ membrane (voxels).
    path_values : numpy.ndarray, float (z, y, x)
        The remainder (boundary images removed) in SD of ``region``, unsmoothed: what the
        straight-path test reads.
    grey : numpy.ndarray, float (z, y, x)
        The remainder smoothed by ``smooth_nm``, in SD of ``region``: what the hierarchy
        thresholds.
    contrast : float
        The membranes' contrast (:func:`.cuts.membrane_contrast`) that sets the automatic cuts.
    """

    exact: np.ndarray
    boundaries: np.ndarray
    az_id: int
    region: np.ndarray
    vesicle_table: pd.DataFrame
    az_distance_vox: np.ndarray
    path_values: np.ndarray
    grey: np.ndarray
    contrast: float


def search_volumes(
    tomogram: np.ndarray,
    vesicle_labels: np.ndarray,
    az_mask: np.ndarray,
    region_mask: np.ndarray,
    voxel_size_nm: float,
    *,
    max_distance_nm: float = 25.0,
    smooth_nm: float = 2.2,
    contact_nm: float = 2.2,
    subtract_boundaries: bool = True,
    az_distance_vox: np.ndarray | None = None,
) -> SearchVolumes:
    """The volumes :func:`find_filaments` searches (arguments as there, the same defaults).

    Raises
    ------
    ValueError
        For volumes that differ in shape.
    DataError
        When no region voxel lies near a vesicle.
    """
    shape = np.shape(tomogram)
    vesicle_labels = np.asarray(vesicle_labels).astype(np.int64)
    az_mask = np.asarray(az_mask, dtype=bool)
    if vesicle_labels.shape != shape or az_mask.shape != shape:
        raise ValueError("tomogram, vesicle labels and AZ mask differ in shape")
    az_id = int(vesicle_labels.max()) + 1
    exact = vesicle_labels.copy()
    exact[az_mask] = az_id
    boundaries = exact
    if contact_nm > 0:
        from skimage.segmentation import expand_labels

        boundaries = expand_labels(exact, contact_nm / voxel_size_nm)
    near = edt.edt(vesicle_labels == 0, black_border=False, parallel=1) <= (
        max_distance_nm / voxel_size_nm
    )
    region = np.asarray(region_mask, dtype=bool) & (boundaries == 0) & near
    if not region.any():
        raise DataError("no region voxel lies near a vesicle: nothing to analyse")
    from analysis.io import label_table

    # both the subtraction and the path test (tethers) need these: computed once
    vesicle_table = label_table(vesicle_labels, 1.0)
    if az_distance_vox is None:
        az_distance_vox = edt.edt(~az_mask, black_border=False, parallel=1)
    values = np.asarray(tomogram, dtype=np.float32)
    if subtract_boundaries:
        values = remove_boundary_profiles(
            values,
            vesicle_labels,
            az_mask,
            voxel_size_nm,
            az_distance_vox=az_distance_vox,
            vesicle_table=vesicle_table,
            region_mask=region_mask,
        )
    # the path test averages along its paths itself: unsmoothed, it keeps the filament's
    # dark core, which the CTF flanks with light and smoothing would cancel
    path_values = _standardise(values, region)
    contrast = membrane_contrast(tomogram, values, vesicle_labels, region, voxel_size_nm)
    if smooth_nm > 0:
        values = ndimage.gaussian_filter(values, smooth_nm / voxel_size_nm)
    return SearchVolumes(
        exact,
        boundaries,
        az_id,
        region,
        vesicle_table,
        az_distance_vox,
        path_values,
        _standardise(values, region),
        contrast,
    )


def _standardise(values: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``values`` in standard deviations from their mean over ``region``."""
    return (values - values[region].mean()) / (values[region].std() + 1e-12)


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
    search_nm: float = 4.4,
    max_path_grey: float | str | Mapping[str, float | str] | None = DEFAULT_MAX_PATH_GREY,
    merge_nm: float | None = DEFAULT_MERGE_NM,
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
    search_nm : float
        How far from the line of closest approach of two boundaries the straight-path test
        looks (:mod:`.paths`).
    max_path_grey : "auto", float, mapping or None
        Keep the filaments of a pair of boundaries only when the darkest straight path
        across their gap has a mean grey value at or below this (standard deviations of the
        unsmoothed remainder in the analysed region): "auto" sets a cut per kind from the
        tomogram's membrane contrast (:mod:`.cuts`); a number is one cut for both kinds; a
        mapping ``{"connector": …, "tether": …}`` gives one per kind (a number or "auto");
        None keeps every filament, as Pyto.
    merge_nm : float or None
        Pieces of the same pair of boundaries whose voxels come within this gap of each
        other (0: touching, also diagonally) are one filament, linked in a chain; by default
        (infinite) every piece of a pair (see the module notes). None keeps every piece a
        filament of its own, as Pyto.
    az_distance_vox : numpy.ndarray, optional
        The AZ membrane's distance map in voxels, if already computed.

    Returns
    -------
    Filaments
    """
    shape = np.shape(tomogram)
    search = search_volumes(
        tomogram,
        vesicle_labels,
        az_mask,
        region_mask,
        voxel_size_nm,
        max_distance_nm=max_distance_nm,
        smooth_nm=smooth_nm,
        contact_nm=contact_nm,
        subtract_boundaries=subtract_boundaries,
        az_distance_vox=az_distance_vox,
    )
    boundaries, az_id, region = search.boundaries, search.az_id, search.region
    vesicle_table, az_distance_vox = search.vesicle_table, search.az_distance_vox
    grey = search.grey
    cut = resolve_cuts(max_path_grey, search.contrast)
    selected = _hierarchy(
        grey, region, boundaries, az_id, thresholds, max_volume_nm3 / voxel_size_nm**3
    )
    for fil in selected:
        # the pair it is reported as: with the membrane a tether, else its first two vesicles
        vesicles = sorted(b for b in fil["boundaries"] if b != az_id)
        fil["pair"] = (vesicles[0], az_id if az_id in fil["boundaries"] else vesicles[1])
    path_grey = _path_greys(
        search.path_values,
        [fil["pair"] for fil in selected],
        vesicle_table,
        az_id,
        search_nm / voxel_size_nm,
        max_distance_nm / voxel_size_nm,
        az_distance_vox,
    )
    for fil in selected:
        fil["path_grey"] = path_grey[fil["pair"]]
    if cut is not None:
        selected = [
            fil
            for fil in selected
            if fil["path_grey"] <= cut["tether" if fil["pair"][1] == az_id else "connector"]
        ]
    selected = merge_pieces(selected, shape, None if merge_nm is None else merge_nm / voxel_size_nm)

    labels = np.zeros(shape, np.int32)
    for i, fil in enumerate(selected, start=1):
        labels.flat[fil["voxels"]] = i
    ends = _Ends(search.exact, boundaries, int(np.ceil(contact_nm / voxel_size_nm)) + 2)
    rows = [
        _filament_row(i, fil, az_id, grey, ends, voxel_size_nm, cut)
        for i, fil in enumerate(selected, start=1)
    ]
    table = pd.DataFrame(rows, columns=FILAMENT_COLUMNS)
    per_vesicle = count_per_vesicle(table, vesicle_labels)
    return Filaments(table, labels, per_vesicle, search.contrast, cut)


def _hierarchy(
    grey: np.ndarray,
    region: np.ndarray,
    boundaries: np.ndarray,
    az_id: int,
    thresholds,
    max_volume_vox: float,
) -> list[dict]:
    """The filament pieces of the hierarchy of thresholds (see the module notes).

    Each record: ``voxels`` (flat indices, sorted), ``boundaries`` (the set of ids it
    touches) and ``threshold`` (where it was first found); in rising threshold.
    """
    selected: list[dict] = []
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
            if inside.get(piece):
                # one earlier filament: found at a darker threshold, keep that, the tighter
                # one; several: taking the piece would merge them, keep them apart
                continue
            record = {
                "voxels": np.sort(order[start[piece - 1] : start[piece]]),
                "boundaries": bset,
                "threshold": float(level),
            }
            added.append(record)
        selected += added
    return selected


@dataclass
class _Ends:
    """What a filament's two ends are looked up in: the exact and the widened boundaries, and
    how far (voxels) from a contact the exact boundary voxel is searched."""

    exact: np.ndarray
    boundaries: np.ndarray
    reach: int


def _filament_row(i, fil, az_id, grey, ends: _Ends, voxel_size_nm, cut) -> dict:
    """The :data:`FILAMENT_COLUMNS` of one merged filament record (:func:`merge_pieces`)."""
    shape = ends.exact.shape
    a, other = fil["pair"]
    kind = "tether" if other == az_id else "connector"
    # its length is the darkest piece's: the contacts of all would average pieces apart
    contacts = _contact_centres(fil["core"], ends.boundaries, shape)
    first = _nearest_voxel(ends.exact, contacts[a], a, ends.reach)
    second = _nearest_voxel(ends.exact, contacts[other], other, ends.reach)
    centre = np.column_stack(np.unravel_index(fil["voxels"], shape)).mean(axis=0)
    return {
        "filament_id": i,
        "kind": kind,
        "vesicle_a": a,
        "vesicle_b": 0 if kind == "tether" else other,
        "n_boundaries": len(fil["boundaries"]),
        "n_pieces": fil["n_pieces"],
        "piece_gap_nm": fil["piece_gap_vox"] * voxel_size_nm,
        "threshold": fil["threshold"],
        "mean_grey": float(grey.flat[fil["voxels"]].mean()),
        "path_grey": fil["path_grey"],
        "volume_nm3": len(fil["voxels"]) * voxel_size_nm**3,
        # between the facing surfaces of the two boundary voxels: one voxel less
        "length_nm": max(np.linalg.norm(first - second) - 1.0, 0.0) * voxel_size_nm,
        "angle_to_beam_deg": angle_to_beam_deg(second - first),
        "z_vox": centre[0],
        "y_vox": centre[1],
        "x_vox": centre[2],
        "path_cut": np.nan if cut is None else cut[kind],
    }


def angle_to_beam_deg(direction):
    """Angle (degrees, 0–90) between a direction (z, y, x) and the beam (z); NaN for none.

    ``direction`` is one vector, shape (3,), giving a float, or an array of them, shape
    (..., 3), giving an array of angles (a line has no sign: −z is 0° too).
    """
    direction = np.asarray(direction, float)
    norm = np.linalg.norm(direction, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.abs(direction[..., 0]) / norm
    angle = np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))
    return float(angle) if np.ndim(angle) == 0 else angle


def piece_gaps(pieces: list[np.ndarray], shape) -> np.ndarray:
    """Gaps between pieces: the shortest distance between their voxel centres, less one.

    Parameters
    ----------
    pieces : list of numpy.ndarray
        Flat indices (into a volume of ``shape``) of each piece's voxels.
    shape : tuple of int
        The volume's (z, y, x) shape.

    Returns
    -------
    numpy.ndarray, shape (n, n)
        Symmetric, in voxels: 0 for pieces that share a face (and on the diagonal), √2 − 1
        for pieces that meet at an edge.
    """
    from scipy.spatial import cKDTree

    trees = [cKDTree(np.column_stack(np.unravel_index(p, shape))) for p in pieces]
    gaps = np.zeros((len(pieces), len(pieces)))
    for i, j in zip(*np.triu_indices(len(pieces), 1), strict=True):
        nearest = trees[i].query(trees[j].data)[0].min()
        gaps[i, j] = gaps[j, i] = max(nearest - 1.0, 0.0)
    return gaps


def merge_pieces(selected: list[dict], shape, merge_vox: float | None) -> list[dict]:
    """One record per filament: the pieces of each pair within ``merge_vox`` of each other.

    Pieces are linked in chains (single linkage on their :func:`piece_gaps`: each within
    ``merge_vox`` of the next). A merged record has the union of the pieces' voxels and
    boundaries, the darkest piece's voxels as ``core`` and its threshold (where the pair was
    first joined), ``n_pieces``, and ``piece_gap_vox``, the widest gap its chain bridges (0
    for one piece). ``merge_vox=None``
    keeps every piece apart. Filaments keep the order of their first piece.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    by_pair: dict[tuple, list[int]] = {}
    for k, fil in enumerate(selected):
        by_pair.setdefault(fil["pair"], []).append(k)
    groups = []  # (indices into selected, widest gap bridged)
    for members in by_pair.values():
        if merge_vox is None or len(members) == 1:
            groups += [([k], 0.0) for k in members]
            continue
        gaps = piece_gaps([selected[k]["voxels"] for k in members], shape)
        which = np.zeros(len(members), int)  # one filament, unless a finite gap splits it
        if np.isfinite(merge_vox):
            tree = linkage(squareform(gaps, checks=False), "single")
            which = fcluster(tree, merge_vox, criterion="distance")
        for g in np.unique(which):
            inside = np.flatnonzero(which == g)
            widest = 0.0
            if len(inside) > 1:  # the last merge of the group's own tree
                widest = float(linkage(squareform(gaps[np.ix_(inside, inside)]), "single")[-1, 2])
            groups.append(([members[k] for k in inside], widest))
    merged = []
    for indices, widest in sorted(groups, key=lambda g: g[0][0]):
        pieces = [selected[k] for k in indices]
        merged.append(
            {
                "voxels": np.sort(np.concatenate([p["voxels"] for p in pieces])),
                "core": pieces[0]["voxels"],  # the darkest piece: selected rises in threshold
                "boundaries": set().union(*(p["boundaries"] for p in pieces)),
                "threshold": pieces[0]["threshold"],
                "pair": pieces[0]["pair"],
                "path_grey": pieces[0]["path_grey"],
                "n_pieces": len(pieces),
                "piece_gap_vox": widest,
            }
        )
    return merged


def _path_greys(
    values, pairs, vesicle_table, az_id, search_vox, max_length_vox, az_distance_vox
) -> dict:
    """The darkest straight-path mean (:mod:`.paths`) of every pair of boundaries, by pair."""
    from .paths import connector_paths, darkest_path, tether_paths

    wanted = set(pairs)
    if not wanted:
        return {}
    table = vesicle_table.set_index("vesicle_id")
    centres = table[["z_vox", "y_vox", "x_vox"]].to_numpy(float)
    where = {int(v): k for k, v in enumerate(table.index)}
    radius = table["radius_vox"].to_numpy(float)
    out = {}
    for pair in wanted:
        a, b = pair
        ka = where[a]
        if b == az_id:
            paths = tether_paths(
                centres[ka], radius[ka], az_distance_vox, search_vox, max_length_vox
            )
        else:
            kb = where[b]
            paths = connector_paths(centres[ka], radius[ka], centres[kb], radius[kb], search_vox)
        out[pair] = darkest_path(values, paths)[0]
    return out


def count_per_vesicle(table: pd.DataFrame, vesicle_ids) -> pd.DataFrame:
    """Connectors, connected vesicles and tethers of every vesicle (0 for those without).

    Parameters
    ----------
    table : pandas.DataFrame
        Filaments with ``kind``, ``vesicle_a``, ``vesicle_b``: one row per filament, as
        :func:`find_filaments` gives them, or the generator's truth.
    vesicle_ids : array_like of int
        The vesicles to count for; 0 is left out, so a label volume will do.

    Returns
    -------
    pandas.DataFrame
        ``vesicle_id, n_connectors, n_connected_vesicles, n_tethers``: filaments to other
        vesicles, the distinct vesicles they lead to (fewer when two filaments join the same
        pair), and filaments to the AZ membrane.
    """
    ids = np.unique(np.asarray(vesicle_ids))
    ids = ids[ids > 0]
    connectors = table[table["kind"] == "connector"]
    tethers = table[table["kind"] == "tether"]
    ends = pd.DataFrame(
        {
            "vesicle": pd.concat([connectors["vesicle_a"], connectors["vesicle_b"]]),
            "partner": pd.concat([connectors["vesicle_b"], connectors["vesicle_a"]]),
        }
    )
    n_conn = ends["vesicle"].value_counts()
    n_partners = ends.drop_duplicates()["vesicle"].value_counts()
    n_teth = tethers["vesicle_a"].value_counts()
    return pd.DataFrame(
        {
            "vesicle_id": ids,
            "n_connectors": n_conn.reindex(ids, fill_value=0).to_numpy(),
            "n_connected_vesicles": n_partners.reindex(ids, fill_value=0).to_numpy(),
            "n_tethers": n_teth.reindex(ids, fill_value=0).to_numpy(),
        }
    )
