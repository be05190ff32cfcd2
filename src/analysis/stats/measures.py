"""The measures of the field, one value per synapse.

Pyto's papers compare groups on a handful of numbers per synapse: how many vesicles lie in
the proximal zone (vesicle membrane within 45 nm of the active-zone membrane) and in finer
distance bins; which fraction of them is tethered (at least one tether) or connected (at least
one connector); tethers and connectors per vesicle; the vesicle density (volume fraction) of
layers parallel to the membrane; and the lengths of connectors and tethers. Each function
here turns a pooled table (:mod:`.pooling`) into one row per synapse (or per synapse and
bin), so that the synapse, not the vesicle, is the unit of the comparisons
(:mod:`.comparisons`). A synapse without a vesicle in a bin has no fraction there (NaN): it
cannot say anything about it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.active_zone import DEFAULT_BINS_NM, filaments_by_distance

#: The proximal zone (nm from the AZ membrane to the vesicle membrane), Pyto's 0–45 nm.
PROXIMAL_NM = 45.0
#: Per-synapse measures of :func:`synapse_measures`: column, what it is.
MEASURES = {
    "n_proximal": "vesicles in the proximal zone (0-45 nm)",
    "tethered": "fraction of proximal vesicles with a tether",
    "connected": "fraction of proximal vesicles with a connector",
    "tethers_per_vesicle": "tethers per proximal vesicle",
    "connectors_per_vesicle": "connectors per proximal vesicle",
    "connector_length_nm": "mean connector length (nm)",
    "tether_length_nm": "mean tether length (nm)",
}
_KEYS = ["group", "tomogram"]


def proximal(vesicles: pd.DataFrame, proximal_nm: float = PROXIMAL_NM) -> pd.Series:
    """Which vesicles lie in the proximal zone (membrane within ``proximal_nm`` of the AZ)."""
    return vesicles["az_membrane_distance_nm"] <= proximal_nm


def synapse_measures(
    vesicles: pd.DataFrame,
    filaments: pd.DataFrame | None = None,
    *,
    proximal_nm: float = PROXIMAL_NM,
) -> pd.DataFrame:
    """The :data:`MEASURES` of every synapse.

    Parameters
    ----------
    vesicles : pandas.DataFrame
        Pooled vesicle table: ``group``, ``tomogram``, ``az_membrane_distance_nm``,
        ``n_tethers``, ``n_connectors``.
    filaments : pandas.DataFrame, optional
        Pooled filament table (``kind``, ``length_nm``) for the lengths.
    proximal_nm : float

    Returns
    -------
    pandas.DataFrame
        One row per synapse: ``group``, ``tomogram``, ``n_vesicles`` and the measures; NaN
        where a synapse has no proximal vesicle (fractions) or no filament (lengths).
    """
    near = vesicles[proximal(vesicles, proximal_nm)].assign(
        tethered=lambda t: t["n_tethers"] > 0, connected=lambda t: t["n_connectors"] > 0
    )
    units = vesicles.groupby(_KEYS, sort=False).size().rename("n_vesicles").reset_index()
    summary = near.groupby(_KEYS, sort=False).agg(
        n_proximal=("n_tethers", "size"),
        tethered=("tethered", "mean"),
        connected=("connected", "mean"),
        tethers_per_vesicle=("n_tethers", "mean"),
        connectors_per_vesicle=("n_connectors", "mean"),
    )
    out = units.merge(summary.reset_index(), on=_KEYS, how="left")
    out["n_proximal"] = out["n_proximal"].fillna(0).astype(int)
    for kind in ("connector", "tether"):
        column = f"{kind}_length_nm"
        if filaments is None or not len(filaments):
            out[column] = np.nan
            continue
        lengths = filaments[filaments["kind"] == kind].groupby(_KEYS)["length_nm"].mean()
        out = out.merge(lengths.rename(column).reset_index(), on=_KEYS, how="left")
    return out


def synapse_bins(vesicles: pd.DataFrame, bins_nm=DEFAULT_BINS_NM) -> pd.DataFrame:
    """Per synapse and distance bin: vesicles, tethered and connected fractions, filaments per
    vesicle (:func:`analysis.active_zone.filaments_by_distance` of each synapse).

    Returns
    -------
    pandas.DataFrame
        ``group, tomogram, from_nm, to_nm, n_vesicles, tethered, connected,
        tethers_per_vesicle, connectors_per_vesicle, n_tethered, n_connected``; a synapse
        has a row for every bin, with NaN fractions where it has no vesicle.
    """
    rows = []
    for (group, tomogram), table in vesicles.groupby(_KEYS, sort=False):
        binned = filaments_by_distance(table, bins_nm)
        binned.insert(0, "tomogram", tomogram)
        binned.insert(0, "group", group)
        rows.append(binned)
    out = pd.concat(rows, ignore_index=True)
    for name, fraction in (("n_tethered", "tethered"), ("n_connected", "connected")):
        out[name] = (out[fraction].fillna(0) * out["n_vesicles"]).round().astype(int)
    return out


def layer_density(
    layers: pd.DataFrame, *, bin_nm: float = 10.0, max_nm: float = 250.0
) -> pd.DataFrame:
    """Vesicle density (volume fraction) in distance bins from the AZ, per synapse.

    The 1-voxel layers of each synapse (``STEM_layers.csv``) are summed into bins of
    ``bin_nm``: vesicle voxels over all voxels of the bin's layers, the same whatever the
    voxel size.

    Parameters
    ----------
    layers : pandas.DataFrame
        Pooled layer table: ``group``, ``tomogram``, ``distance_nm`` (outer edge of the
        layer), ``voxels``, ``vesicle_voxels``.
    bin_nm, max_nm : float
        Bin width and the farthest distance kept (nm).

    Returns
    -------
    pandas.DataFrame
        ``group, tomogram, from_nm, to_nm, distance_nm`` (bin centre) and
        ``volume_fraction``.
    """
    edges = np.arange(0.0, max_nm + bin_nm / 2, bin_nm)
    kept = layers[layers["distance_nm"] <= edges[-1]].copy()
    index = np.clip(np.searchsorted(edges, kept["distance_nm"], side="left") - 1, 0, None)
    kept["from_nm"] = edges[index]
    sums = kept.groupby([*_KEYS, "from_nm"], sort=False)[["voxels", "vesicle_voxels"]].sum()
    out = sums.reset_index()
    out["to_nm"] = out["from_nm"] + bin_nm
    out["distance_nm"] = out["from_nm"] + bin_nm / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        out["volume_fraction"] = out["vesicle_voxels"] / out["voxels"]
    return out[[*_KEYS, "from_nm", "to_nm", "distance_nm", "volume_fraction"]]
