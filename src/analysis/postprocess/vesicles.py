"""From a probability map to whole, individual, roughly spherical vesicles: the steps in order.

:func:`segment_vesicles` thresholds (fixed, or CryoVesNet's shell-density criterion,
:mod:`.threshold`), finds connected components and splits touching vesicles (:mod:`.separate`),
fits a sphere per vesicle from the tomogram's radial profile (:mod:`.spheres`), removes outliers
and resolves overlaps (:mod:`.outliers`), and returns the vesicle table and a label volume of
whole spheres.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import DataError, ParameterError
from analysis.io import VESICLE_COLUMNS, paint_ball
from analysis.io.labels import with_nm_columns
from analysis.io.memmap import release_pages, work_array
from analysis.postprocess.outliers import flag_outliers, resolve_overlaps
from analysis.postprocess.separate import label_vesicles
from analysis.postprocess.spheres import fit_vesicles
from analysis.postprocess.threshold import shell_density_threshold, threshold_mask

#: Label volumes larger than this are kept in temporary memory-mapped files during
#: post-processing (a 261×1024×1024 tomogram has 1 GiB int32 label volumes).
WORK_MEMORY_BYTES = 256 * 1024**2

#: The columns of the vesicle table, in order (DESIGN.md), before any extra ones.
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
    min_profile_correlation: float = 0.0,
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
        Drop vesicles whose scaled radial profile correlates less with the median one (the
        default 0 keeps every profile that looks at all like the others).
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
