"""From a probability map to whole, individual, roughly spherical vesicles.

:func:`segment_vesicles` runs the steps in order — threshold (fixed, or CryoVesNet's
shell-density criterion, :mod:`.threshold`), connected components and splitting of touching
vesicles (:mod:`.separate`), a sphere fit per vesicle from the tomogram's radial profile
(:mod:`.spheres`), outlier removal and overlap resolution (:mod:`.outliers`) — and returns
the vesicle table and a label volume of whole spheres. :func:`write_outputs` writes the files
of ``analysis segment`` (DESIGN.md), :func:`pyto_labels` the boundary volume Pyto reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import DataError, ParameterError
from analysis.io import VESICLE_COLUMNS, open_mrc_output, paint_ball, write_mrc, write_vesicle_model
from analysis.io.labels import with_nm_columns
from analysis.io.memmap import map_slabs, release_pages, work_array
from analysis.postprocess.outliers import flag_outliers, resolve_overlaps
from analysis.postprocess.separate import label_vesicles
from analysis.postprocess.spheres import fit_sphere, fit_vesicles, radial_profile
from analysis.postprocess.threshold import shell_density_threshold, threshold_mask

#: Label volumes larger than this are kept in temporary memory-mapped files during
#: post-processing (a 261×1024×1024 tomogram has 1 GiB int32 label volumes).
WORK_MEMORY_BYTES = 256 * 1024**2

#: Pyto boundary ids: the region to analyse, the active-zone membrane, then vesicles from 10.
PYTO_REGION_ID, PYTO_AZ_ID, PYTO_FIRST_VESICLE_ID = 1, 2, 10
TABLE_COLUMNS = (
    *VESICLE_COLUMNS,
    "membrane_thickness_nm",
    "lumen_density",
    "fit_score",
    "kept",
    "drop_reason",
)


@dataclass
class Vesicles:
    """Result of :func:`segment_vesicles`.

    Attributes
    ----------
    labels : numpy.ndarray, int32 (z, y, x)
        Whole spheres of the kept vesicles, value = ``vesicle_id``; 0 elsewhere. Like
        ``mask_labels``, a temporary memory map for large tomograms (see
        :func:`segment_vesicles`).
    table : pandas.DataFrame
        One row per candidate (kept or not), DESIGN.md vesicle columns first.
    threshold : float
        Probability threshold used.
    mask_labels : numpy.ndarray, int32 (z, y, x)
        The thresholded mask split into candidates, before fitting.
    profiles : list of numpy.ndarray
        Radial profiles (0.5-voxel bins) of the candidates, in table order.
    """

    labels: np.ndarray
    table: pd.DataFrame
    threshold: float
    mask_labels: np.ndarray
    profiles: list = field(default_factory=list)

    @property
    def kept(self) -> pd.DataFrame:
        """The rows of the vesicles that were kept."""
        return self.table[self.table["kept"]]


def paint_spheres(
    table: pd.DataFrame, shape: tuple[int, int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """Label volume (int32) of whole spheres, value ``vesicle_id``, from a vesicle table.

    ``out``: a zero-filled int32 array of ``shape`` to paint into (e.g. a memory map).
    """
    labels = np.zeros(shape, np.int32) if out is None else out
    for i, row in enumerate(table.itertuples(), start=1):
        centre = np.array([row.z_vox, row.y_vox, row.x_vox])
        paint_ball(labels, centre, row.radius_vox, int(row.vesicle_id))
        if i % 256 == 0:
            release_pages(labels)
    release_pages(labels)
    return labels


def segment_vesicles(
    probability: np.ndarray,
    tomogram: np.ndarray,
    voxel_size_nm: float,
    *,
    threshold: float | str = 0.5,
    min_radius_nm: float = 12.0,
    max_radius_nm: float | None = None,
    radius_from: str = "mask",
    max_mahalanobis: float | None = None,
    min_profile_correlation: float = 0.3,
    split: bool | str = "watershed",
    memory_limit_bytes: int = WORK_MEMORY_BYTES,
    scratch_dir: str | os.PathLike | None = None,
) -> Vesicles:
    """Whole, individual vesicles from a probability map and its tomogram.

    Parameters
    ----------
    probability : numpy.ndarray, float (z, y, x)
        Network output in [0, 1] (:func:`analysis.inference.predict`).
    tomogram : numpy.ndarray (z, y, x)
        The tomogram it was predicted from, membranes dark.
    voxel_size_nm : float
    threshold : float or "shell"
        Fixed probability threshold, or ``"shell"`` for CryoVesNet's criterion (the
        threshold whose mask boundary is darkest).
    min_radius_nm, max_radius_nm : float
        Vesicle radius range; the maximum defaults to one derived from the data.
    radius_from : {"mask", "profile"}
        The radius of the sphere: from the volume of the vesicle's mask (the default; the
        more precise on the synthetic test set, see chapter 4) or the outer edge of the
        membrane in the radial profile. The centre always comes from the profile fit.
    min_profile_correlation : float
        Drop vesicles whose scaled radial profile correlates less with the median one.
    split : {"watershed", "threshold", "none"}
        How touching vesicles are split: a seeded watershed with a size prior (the default;
        the better on the synthetic test set, see chapter 4), CryoVesNet's adaptive local
        threshold, or not at all (see :func:`label_vesicles`).
    memory_limit_bytes : int
        Label volumes larger than this live in temporary memory-mapped files in
        ``scratch_dir`` (the system's temporary folder by default), unlinked at once.
        Together with memory-mapped ``probability`` and ``tomogram`` (read a slab or a
        vesicle's box at a time) this bounds the memory of post-processing by one byte a
        voxel (the mask) plus what the operating system lets the process keep cached.

    Raises
    ------
    DataError
        For an empty map, or a map that is vesicle everywhere.
    ParameterError
        For an unknown ``radius_from`` or ``split``.
    ValueError
        For shapes that differ.
    """
    if probability.shape != tomogram.shape:
        raise ValueError(f"probability {probability.shape} and tomogram {tomogram.shape} differ")
    if radius_from not in ("mask", "profile"):
        raise ParameterError(f"radius_from must be 'mask' or 'profile', not {radius_from!r}")
    if threshold == "shell":
        threshold, _ = shell_density_threshold(probability, tomogram)
    mask = threshold_mask(probability, float(threshold))
    fraction = np.count_nonzero(mask) / mask.size
    if fraction == 0:
        raise DataError(
            f"no voxel has a vesicle probability above {threshold}: nothing to segment "
            "(check the voxel size and the network)"
        )
    if fraction > 0.9:
        raise DataError(
            f"{fraction:.0%} of the voxels have a vesicle probability above {threshold}: "
            "this is not a vesicle map (check the input and the intensity sign)"
        )
    work = dict(memory_limit_bytes=memory_limit_bytes, folder=scratch_dir)
    mask_labels = label_vesicles(
        mask,
        voxel_size_nm,
        min_radius_nm=min_radius_nm,
        split=split,
        probability=probability,
        **work,
    )
    del mask
    fits = fit_vesicles(mask_labels, tomogram, voxel_size_nm)
    if radius_from == "mask":
        fits["profile_radius_vox"] = fits["radius_vox"]
        fits["radius_vox"] = fits["mask_radius_vox"]
    table = flag_outliers(
        with_nm_columns(fits, voxel_size_nm, ["radius"]),
        min_radius_nm=min_radius_nm,
        max_radius_nm=max_radius_nm,
        max_mahalanobis=max_mahalanobis,
        min_profile_correlation=min_profile_correlation,
    )
    kept = table["kept"].to_numpy()
    centres = table[["z_vox", "y_vox", "x_vox"]].to_numpy(float)
    table.loc[kept, "radius_vox"] = resolve_overlaps(
        centres[kept], table.loc[kept, "radius_vox"].to_numpy(float)
    )
    table = table.sort_values("kept", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "vesicle_id", np.arange(1, len(table) + 1))
    table = with_nm_columns(table, voxel_size_nm, ["radius", "z", "y", "x"])
    profiles = list(table.pop("profile"))
    rest = [c for c in table.columns if c not in TABLE_COLUMNS]
    table = table[[*TABLE_COLUMNS, *rest]]
    labels = paint_spheres(
        table[table["kept"]], probability.shape, work_array(probability.shape, np.int32, **work)
    )
    return Vesicles(labels, table, float(threshold), mask_labels, profiles)


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
    from analysis.io import atomic_outputs

    outdir = Path(outdir)
    paths = {
        "labels": outdir / f"{stem}_labels.mrc",
        "vesicles": outdir / f"{stem}_vesicles.csv",
        "model": outdir / f"{stem}_vesicles.mod",
        "pyto_labels": outdir / f"{stem}_pyto_labels.mrc",
    }
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


__all__ = [
    "PYTO_AZ_ID",
    "PYTO_FIRST_VESICLE_ID",
    "PYTO_REGION_ID",
    "TABLE_COLUMNS",
    "Vesicles",
    "fit_sphere",
    "fit_vesicles",
    "flag_outliers",
    "label_vesicles",
    "paint_spheres",
    "pyto_labels",
    "radial_profile",
    "resolve_overlaps",
    "segment_vesicles",
    "shell_density_threshold",
    "threshold_mask",
    "write_outputs",
]
