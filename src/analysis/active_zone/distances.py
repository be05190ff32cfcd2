"""Where the vesicles are relative to the active-zone membrane.

Distances are Euclidean, in nm, measured from voxel centres to the nearest voxel of the
active-zone (AZ) membrane mask. As in Pyto, the analysed region is cut into layers one voxel
thick parallel to the membrane — layer ``k`` holds the region's voxels at a distance in
``(k − 1, k]`` voxels from it — and vesicle positions are summarised per layer and in
distance bins.
"""

from __future__ import annotations

import edt
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.errors import DataError
from analysis.io import centre_voxels

#: Bins (nm, from the AZ membrane to the vesicle membrane) of the proximal-vesicle counts:
#: the 0–45 nm proximal zone in 5–25 nm steps, then the distal zone (Pyto's usual split).
DEFAULT_BINS_NM = (0.0, 5.0, 10.0, 20.0, 45.0, 75.0, 150.0, 250.0)


def az_distance_map(az_mask: np.ndarray, voxel_size_nm: float) -> np.ndarray:
    """Distance (nm) of every voxel to the nearest AZ membrane voxel; 0 on the membrane.

    Parameters
    ----------
    az_mask : numpy.ndarray of bool, shape (z, y, x)
    voxel_size_nm : float

    Returns
    -------
    numpy.ndarray, float32, shape (z, y, x)
    """
    az_mask = np.asarray(az_mask, dtype=bool)
    if not az_mask.any():
        raise DataError("the active-zone mask is empty")
    distance = edt.edt(~az_mask, black_border=False, parallel=1)
    return (distance * voxel_size_nm).astype(np.float32)


def layers(
    az_mask: np.ndarray,
    region_mask: np.ndarray,
    voxel_size_nm: float = 1.0,
    *,
    az_distance_vox: np.ndarray | None = None,
) -> np.ndarray:
    """Layers one voxel thick parallel to the AZ membrane, numbered 1, 2, … from it.

    Returns an int32 volume: ``k`` for region voxels at a distance in ``(k − 1, k]`` voxels
    from the membrane, 0 outside the region and on the membrane. ``az_distance_vox``, the
    membrane's distance map in voxels (:func:`az_distance_map` with 1.0), saves computing it
    again when the caller has it.
    """
    if az_distance_vox is None:
        az_distance_vox = az_distance_map(az_mask, 1.0)
    out = np.ceil(az_distance_vox).astype(np.int32)
    out[~np.asarray(region_mask, dtype=bool) | np.asarray(az_mask, dtype=bool)] = 0
    return out


def vesicle_distances(
    vesicles: pd.DataFrame,
    vesicle_labels: np.ndarray,
    az_mask: np.ndarray,
    voxel_size_nm: float,
    *,
    az_distance_vox: np.ndarray | None = None,
) -> pd.DataFrame:
    """Distance of each vesicle's centre and membrane to the AZ membrane, in nm.

    Parameters
    ----------
    vesicles : pandas.DataFrame
        Vesicle table (``vesicle_id``, ``z_vox``, ``y_vox``, ``x_vox``, ``radius_vox``).
    vesicle_labels : numpy.ndarray, int, shape (z, y, x)
        The vesicles as labels with the table's ids (whole spheres).
    az_mask : numpy.ndarray of bool, shape (z, y, x)
    voxel_size_nm : float
    az_distance_vox : numpy.ndarray, optional
        The membrane's distance map in voxels, if already computed (see :func:`layers`).

    Returns
    -------
    pandas.DataFrame
        The table with ``az_distance_nm`` (centre to the nearest membrane voxel, exact for the
        sub-voxel centre) and ``az_membrane_distance_nm`` (nearest vesicle voxel to the nearest
        membrane voxel, 0 when they touch; Pyto's "distance to the AZ").
    """
    az_points = np.argwhere(np.asarray(az_mask, dtype=bool))
    if not len(az_points):
        raise DataError("the active-zone mask is empty")
    centres = vesicles[["z_vox", "y_vox", "x_vox"]].to_numpy(float)
    centre_distance, _ = cKDTree(az_points).query(centres)
    if az_distance_vox is None:
        az_distance_vox = az_distance_map(az_mask, 1.0)
    distance_map = az_distance_vox * voxel_size_nm
    ids = vesicles["vesicle_id"].to_numpy()
    # The nearest voxel of a vesicle lies one voxel from the membrane when they touch.
    nearest = ndimage.minimum(distance_map, labels=vesicle_labels, index=ids)
    out = vesicles.copy()
    out["az_distance_nm"] = centre_distance * voxel_size_nm
    out["az_membrane_distance_nm"] = np.maximum(np.asarray(nearest) - voxel_size_nm, 0.0)
    return out


def layer_profile(
    layer_volume: np.ndarray,
    vesicle_labels: np.ndarray,
    vesicles: pd.DataFrame,
    voxel_size_nm: float,
) -> pd.DataFrame:
    """Vesicle occupancy of each layer.

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer``, ``distance_nm`` (its outer edge), ``voxels``,
        ``vesicle_voxels``, ``volume_fraction`` (of the layer inside vesicles),
        ``n_vesicles`` (vesicles with a voxel in the layer) and ``n_centres`` (vesicle
        centres in it).
    """
    n = int(layer_volume.max())
    flat = layer_volume.ravel()
    voxels = np.bincount(flat, minlength=n + 1)
    inside = np.bincount(flat, weights=(vesicle_labels.ravel() > 0), minlength=n + 1)
    both = (flat > 0) & (vesicle_labels.ravel() > 0)
    pairs = np.unique(np.column_stack([flat[both], vesicle_labels.ravel()[both]]), axis=0)
    occupying = np.bincount(pairs[:, 0], minlength=n + 1)
    centre_layer = layer_volume[tuple(centre_voxels(vesicles, layer_volume.shape).T)]
    centres = np.bincount(centre_layer, minlength=n + 1)
    k = np.arange(1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = inside[1:] / voxels[1:]
    return pd.DataFrame(
        {
            "layer": k,
            "distance_nm": k * voxel_size_nm,
            "voxels": voxels[1:],
            "vesicle_voxels": inside[1:].astype(int),
            "volume_fraction": fraction,
            "n_vesicles": occupying[1:],
            "n_centres": centres[1:],
        }
    )


def proximal_counts(distances_nm, bins_nm=DEFAULT_BINS_NM) -> pd.DataFrame:
    """Number of vesicles per distance bin (e.g. of ``az_membrane_distance_nm``).

    Bins are half-open ``[a, b)``; the first is closed at 0 so that touching vesicles count.
    """
    distances_nm = np.asarray(distances_nm, dtype=float)
    edges = np.asarray(bins_nm, dtype=float)
    counts, _ = np.histogram(distances_nm, bins=edges)
    return pd.DataFrame(
        {
            "from_nm": edges[:-1],
            "to_nm": edges[1:],
            "n_vesicles": counts,
            "cumulative": np.cumsum(counts),
        }
    )


def filaments_by_distance(vesicles: pd.DataFrame, bins_nm=DEFAULT_BINS_NM) -> pd.DataFrame:
    """Tethered and connected vesicles in each distance bin from the AZ, as Pyto sums them up.

    Parameters
    ----------
    vesicles : pandas.DataFrame
        Per vesicle ``az_membrane_distance_nm``, ``n_tethers`` and ``n_connectors`` (the
        ``vesicles`` table of :func:`analysis.active_zone.analyse_active_zone`).
    bins_nm : sequence of float
        Bin edges (nm), as for :func:`proximal_counts`.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``from_nm``, ``to_nm``, ``n_vesicles``, ``tethered`` and
        ``connected`` (fractions of its vesicles with at least one tether / connector; NaN
        for an empty bin) and ``tethers_per_vesicle``, ``connectors_per_vesicle`` (means).
    """
    distance = vesicles["az_membrane_distance_nm"].to_numpy(float)
    edges = np.asarray(bins_nm, dtype=float)

    def total(weights):
        return np.histogram(distance, bins=edges, weights=np.asarray(weights, float))[0]

    n = np.histogram(distance, bins=edges)[0]
    tethers = vesicles["n_tethers"].to_numpy(float)
    connectors = vesicles["n_connectors"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "from_nm": edges[:-1],
                "to_nm": edges[1:],
                "n_vesicles": n,
                "tethered": total(tethers > 0) / n,
                "connected": total(connectors > 0) / n,
                "tethers_per_vesicle": total(tethers) / n,
                "connectors_per_vesicle": total(connectors) / n,
            }
        )
