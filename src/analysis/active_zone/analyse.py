"""The whole active-zone analysis of one tomogram, from arrays or from files.

:func:`analyse_active_zone` runs :mod:`.distances` and :mod:`.filaments` together and returns
the tables; :func:`analyse_files` reads the inputs (MRC masks, or IMOD models: an open contour
traced along the membrane for the AZ, closed outlines for the region) and writes

``STEM_az_vesicles.csv``
    per vesicle: centre, radius, distances to the AZ (centre and membrane, nm), layer of the
    centre, numbers of connectors (and of the vesicles they lead to) and of tethers;
``STEM_layers.csv``
    per 1-voxel layer parallel to the AZ: distance, voxels, vesicle volume fraction, counts;
``STEM_proximal.csv``
    vesicles per distance bin from the AZ (nm);
``STEM_filaments.csv`` and ``STEM_filaments.mrc``
    one row / one label per connector or tether (its pieces merged: ``n_pieces``);

all through temporary files renamed together at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.active_zone.distances import (
    DEFAULT_BINS_NM,
    az_distance_map,
    layer_profile,
    layers,
    proximal_counts,
    vesicle_distances,
)
from analysis.active_zone.filaments import find_filaments
from analysis.errors import DataError
from analysis.io import (
    atomic_outputs,
    centre_voxels,
    label_table,
    read_like,
    read_mask,
    read_tomogram,
    read_vesicle_table,
    tomogram_stem,
    write_mrc,
)

#: Output files of :func:`analyse_files`, by role, as ``STEM`` + suffix.
AZ_OUTPUT_SUFFIXES = {
    "vesicles": "_az_vesicles.csv",
    "layers": "_layers.csv",
    "proximal": "_proximal.csv",
    "filaments": "_filaments.csv",
    "filament_labels": "_filaments.mrc",
}


@dataclass
class ActiveZone:
    """Result of :func:`analyse_active_zone` (tables described in the module notes)."""

    vesicles: pd.DataFrame
    layers: pd.DataFrame
    proximal: pd.DataFrame
    filaments: pd.DataFrame
    filament_labels: np.ndarray


def analyse_active_zone(
    tomogram: np.ndarray,
    vesicle_labels: np.ndarray,
    az_mask: np.ndarray,
    region_mask: np.ndarray,
    voxel_size_nm: float,
    *,
    vesicles: pd.DataFrame | None = None,
    bins_nm=DEFAULT_BINS_NM,
    **filament_options,
) -> ActiveZone:
    """Distances, layers, proximal counts, connectors and tethers of one tomogram.

    Parameters
    ----------
    tomogram : numpy.ndarray, shape (z, y, x)
    vesicle_labels : numpy.ndarray, int, shape (z, y, x)
        Whole vesicles, one id each.
    az_mask, region_mask : numpy.ndarray of bool, shape (z, y, x)
        The active-zone membrane and the cytoplasm to analyse.
    voxel_size_nm : float
    vesicles : pandas.DataFrame, optional
        Vesicle table with the labels' ids (fitted centres and radii); from the labels
        (centroid, equal-volume radius) by default.
    bins_nm : sequence of float
        Distance bins of the proximal counts (vesicle membrane to AZ).
    filament_options
        Options of :func:`analysis.active_zone.find_filaments`.
    """
    labels = np.asarray(vesicle_labels).astype(np.int32)
    shapes = {np.shape(tomogram), labels.shape, np.shape(az_mask), np.shape(region_mask)}
    if len(shapes) != 1:
        raise ValueError(f"tomogram, labels and masks differ in shape: {sorted(shapes)}")
    if vesicles is None:
        vesicles = label_table(labels, voxel_size_nm)
    distance_vox = az_distance_map(az_mask, 1.0)  # once, for all three
    layer_volume = layers(az_mask, region_mask, az_distance_vox=distance_vox)
    table = vesicle_distances(
        vesicles, labels, az_mask, voxel_size_nm, az_distance_vox=distance_vox
    )
    filaments = find_filaments(
        tomogram,
        labels,
        az_mask,
        region_mask,
        voxel_size_nm,
        az_distance_vox=distance_vox,
        **filament_options,
    )
    table["layer"] = layer_volume[tuple(centre_voxels(table, labels.shape).T)]
    table = table.merge(filaments.per_vesicle, on="vesicle_id", how="left")
    counts = ["n_connectors", "n_connected_vesicles", "n_tethers"]
    table[counts] = table[counts].fillna(0).astype(int)
    return ActiveZone(
        vesicles=table,
        layers=layer_profile(layer_volume, labels, vesicles, voxel_size_nm),
        proximal=proximal_counts(table["az_membrane_distance_nm"], bins_nm),
        filaments=filaments.table,
        filament_labels=filaments.labels,
    )


def analyse_files(
    tomogram: str | os.PathLike,
    vesicle_labels: str | os.PathLike,
    az_mask: str | os.PathLike,
    region_mask: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    vesicles: str | os.PathLike | None = None,
    voxel_size_nm: float | None = None,
    **options,
) -> dict[str, Path]:
    """:func:`analyse_active_zone` of files; writes the tables and filament labels.

    ``vesicles`` is a ``STEM_vesicles.csv`` of ``analysis segment`` (its kept rows); the
    output ``STEM`` is the tomogram's. Returns the written paths by role.
    """
    tomo = read_tomogram(tomogram, voxel_size_nm=voxel_size_nm)
    labels = read_like(vesicle_labels, tomo, "labels")
    table = None
    if vesicles is not None:
        table = read_vesicle_table(vesicles)
        if "kept" in table:
            table = table[table["kept"]].reset_index(drop=True)
    try:
        result = analyse_active_zone(
            tomo.data,
            np.asarray(labels.data),
            read_mask(az_mask, tomo, "active-zone mask"),
            read_mask(region_mask, tomo, "region mask"),
            tomo.voxel_size_nm,
            vesicles=table,
            **options,
        )
    except DataError as err:
        raise err.in_file(tomogram) from err
    outdir = Path(outdir)
    stem = tomogram_stem(tomogram)
    paths = {role: outdir / f"{stem}{suffix}" for role, suffix in AZ_OUTPUT_SUFFIXES.items()}
    with atomic_outputs(paths) as tmp:
        for role in ("vesicles", "layers", "proximal", "filaments"):
            getattr(result, role).to_csv(tmp[role], index=False)
        write_mrc(
            tmp["filament_labels"],
            result.filament_labels,
            tomo.voxel_size_nm,
            origin_angstrom=tomo.origin_angstrom,
        )
    return paths
