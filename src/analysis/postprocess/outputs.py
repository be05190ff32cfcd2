"""The files of ``analysis segment`` (DESIGN.md), and the boundary volume Pyto reads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from analysis.io import atomic_outputs, open_mrc_output, write_mrc, write_vesicle_model
from analysis.io.memmap import map_slabs
from analysis.postprocess.vesicles import Vesicles

#: The files of ``analysis segment`` for a tomogram ``STEM``, by role, as ``STEM`` + suffix
#: (DESIGN.md): the probability map (:mod:`analysis.pipeline`), the four of
#: :func:`write_outputs`, and the domain check (:mod:`analysis.inference.domain`).
OUTPUT_SUFFIXES = {
    "probability": "_probability.mrc",
    "labels": "_labels.mrc",
    "vesicles": "_vesicles.csv",
    "model": "_vesicles.mod",
    "pyto_labels": "_pyto_labels.mrc",
    "check": "_check.json",
}
#: The roles of :data:`OUTPUT_SUFFIXES` that :func:`write_outputs` writes.
VESICLE_OUTPUTS = ("labels", "vesicles", "model", "pyto_labels")

#: Pyto boundary ids: the region to analyse, the active-zone membrane, then vesicles from 10.
PYTO_REGION_ID, PYTO_AZ_ID, PYTO_FIRST_VESICLE_ID = 1, 2, 10


def pyto_labels(
    vesicle_labels: np.ndarray,
    az_mask: np.ndarray | None = None,
    region_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Boundary label volume for Pyto: region 1, AZ membrane 2, vesicle ``k`` as ``9 + k``.

    Pyto's connector/tether analysis reads one volume in which the boundaries (membrane and
    vesicles) and the region between them carry separate ids; by convention here vesicles are
    numbered from 10 and the active-zone membrane is 2. Vesicles and membrane overwrite the
    region.
    """
    out = np.zeros(vesicle_labels.shape, np.int16)
    if region_mask is not None:
        out[np.asarray(region_mask, bool)] = PYTO_REGION_ID
    if az_mask is not None:
        out[np.asarray(az_mask, bool)] = PYTO_AZ_ID
    inside = vesicle_labels > 0
    out[inside] = vesicle_labels[inside] + PYTO_FIRST_VESICLE_ID - 1
    return out


def output_files(stem: str, outdir: str | os.PathLike, roles=tuple(OUTPUT_SUFFIXES)) -> dict:
    """The paths of the ``roles`` of :data:`OUTPUT_SUFFIXES` for ``STEM`` in ``outdir``."""
    return {role: Path(outdir) / f"{stem}{OUTPUT_SUFFIXES[role]}" for role in roles}


def write_outputs(
    vesicles: Vesicles,
    outdir: str | os.PathLike,
    stem: str,
    voxel_size_nm: float,
    *,
    origin_angstrom=(0.0, 0.0, 0.0),
    az_mask: np.ndarray | None = None,
    region_mask: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write ``STEM_labels.mrc``, ``STEM_vesicles.csv``, ``STEM_vesicles.mod`` and
    ``STEM_pyto_labels.mrc`` to ``outdir``; returns their paths.

    All four are written to temporary files first and renamed only when all are complete, so
    a failure leaves the folder as it was.
    """
    paths = output_files(stem, outdir, VESICLE_OUTPUTS)
    header = dict(origin_angstrom=origin_angstrom)
    kept = vesicles.kept
    with atomic_outputs(paths) as tmp:
        write_mrc(tmp["labels"], vesicles.labels, voxel_size_nm, **header)
        vesicles.table.to_csv(tmp["vesicles"], index=False)
        write_vesicle_model(
            tmp["model"],
            kept[["z_vox", "y_vox", "x_vox"]].to_numpy(float),
            kept["radius_vox"].to_numpy(float),
            voxel_size_nm,
            shape=vesicles.labels.shape,
            **header,
        )
        labels = vesicles.labels
        with open_mrc_output(
            tmp["pyto_labels"], labels.shape, voxel_size_nm, dtype=np.int16, **header
        ) as boundaries:  # slab by slab, for large tomograms
            map_slabs(pyto_labels, boundaries, labels, az_mask, region_mask)
    return paths
