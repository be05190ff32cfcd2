"""Vesicle tables from label volumes, in the columns fixed by DESIGN.md."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputFileError

#: The leading columns of every vesicle table (DESIGN.md).
VESICLE_COLUMNS = [
    "vesicle_id",
    "z_vox",
    "y_vox",
    "x_vox",
    "radius_vox",
    "z_nm",
    "y_nm",
    "x_nm",
    "radius_nm",
]


def centre_voxels(centres, shape) -> np.ndarray:
    """The voxel (z, y, x) holding each centre, clipped into a volume of ``shape``.

    ``centres`` is a vesicle table (``z_vox, y_vox, x_vox``) or an (n, 3) array in voxels;
    returns an (n, 3) int array, ready for ``volume[tuple(voxels.T)]``.
    """
    if isinstance(centres, pd.DataFrame):
        centres = centres[["z_vox", "y_vox", "x_vox"]].to_numpy(float)
    voxels = np.rint(np.asarray(centres, dtype=float).reshape(-1, 3)).astype(int)
    return np.clip(voxels, 0, np.asarray(shape) - 1)


def label_table(labels: np.ndarray, voxel_size_nm: float) -> pd.DataFrame:
    """One row per label: centroid and equivalent-sphere radius, in voxels and nm.

    Parameters
    ----------
    labels : numpy.ndarray, shape (z, y, x), int
        0 = background, each positive value one vesicle.
    voxel_size_nm : float
        Isotropic voxel size in nm.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`VESICLE_COLUMNS`; ``radius_vox`` is the radius of the sphere with the
        label's volume, ``(3 V / 4 pi) ** (1/3)``.
    """
    flat = labels.ravel()
    n = int(flat.max()) + 1 if flat.size else 1
    counts = np.bincount(flat, minlength=n)
    ids = np.flatnonzero(counts[1:]) + 1
    z, y, x = np.indices(labels.shape, sparse=True)
    sums = [
        np.bincount(flat, weights=np.broadcast_to(c, labels.shape).ravel(), minlength=n)[ids]
        for c in (z, y, x)
    ]
    centres = np.column_stack(sums) / counts[ids, None]
    radius = np.cbrt(3 * counts[ids] / (4 * np.pi))
    table = pd.DataFrame(
        {
            "vesicle_id": ids,
            "z_vox": centres[:, 0],
            "y_vox": centres[:, 1],
            "x_vox": centres[:, 2],
            "radius_vox": radius,
        }
    )
    return with_nm_columns(table, voxel_size_nm)[VESICLE_COLUMNS]


def with_nm_columns(
    table: pd.DataFrame, voxel_size_nm: float, names=("z", "y", "x", "radius")
) -> pd.DataFrame:
    """The table with a ``NAME_nm`` column from each ``NAME_vox`` column of ``names``.

    Existing ``NAME_nm`` columns are replaced where they are; new ones follow the others.
    """
    return table.assign(**{f"{n}_nm": table[f"{n}_vox"] * voxel_size_nm for n in names})


def read_vesicle_table(
    path: str | os.PathLike, columns=("vesicle_id", "z_vox", "y_vox", "x_vox", "radius_vox")
) -> pd.DataFrame:
    """Read a vesicle table (``STEM_vesicles.csv`` of ``analysis segment``) and check it.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.
    columns : sequence of str
        The columns the caller needs; by default a vesicle's id, centre and radius in voxels.

    Returns
    -------
    pandas.DataFrame
        All rows, kept or not (the ``kept`` column says which, where there is one).

    Raises
    ------
    InputFileError
        For a missing file, a file that is not a CSV table, or one without ``columns``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such vesicle table" if not path.exists() else "is a folder")
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:  # pandas' ParserError and EmptyDataError included
        raise InputFileError(path, f"not a readable CSV table ({error})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputFileError(
            path, f"is not a vesicle table of analysis segment: it lacks the columns {missing}"
        )
    return table
