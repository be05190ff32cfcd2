"""Tomogram and IMOD model input/output.

Everything returned here is in (z, y, x) voxel order with lengths in nm; IMOD's (x, y, z) order
and the MRC header's Å appear only inside this package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.io.atomic import atomic_output, atomic_outputs, tomogram_stem
from analysis.io.imod import (
    POINT_COLUMNS,
    model_voxel_size_nm,
    read_imod_model,
    write_vesicle_model,
)
from analysis.io.labels import VESICLE_COLUMNS, centre_voxels, label_table, read_vesicle_table
from analysis.io.rasterise import GROUPINGS, paint_ball, points_to_labels, points_to_sheet
from analysis.io.tomogram import (
    MRCHeaderWarning,
    Tomogram,
    open_mrc_output,
    read_tomogram,
    write_mrc,
)


@dataclass
class Annotation:
    """A manual IMOD annotation rasterised onto a tomogram.

    Attributes
    ----------
    points : pandas.DataFrame
        The model's points in the tomogram's voxels (see :func:`read_imod_model`).
    labels : numpy.ndarray, shape (z, y, x), int32
        One id per vesicle (closed contours and scattered spheres), 0 = background.
    membrane : numpy.ndarray, shape (z, y, x), bool
        The open contours (e.g. a traced plasma membrane), empty if there are none.
    """

    points: pd.DataFrame
    labels: np.ndarray
    membrane: np.ndarray

    @property
    def n_vesicles(self) -> int:
        """Number of distinct vesicle labels."""
        return int(np.count_nonzero(np.unique(self.labels)))


def read_annotation(
    path: str | os.PathLike,
    like: Tomogram,
    *,
    grouping: str = "auto",
    model_voxel_size_nm: float | None = None,
) -> Annotation:
    """Read an IMOD model and rasterise it at the shape and voxel size of ``like``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mod`` file.
    like : Tomogram
        The tomogram the model was drawn on (or the same volume at another binning).
    grouping : str
        How closed contours form vesicles; see :func:`points_to_labels`.
    model_voxel_size_nm : float, optional
        Voxel size the model was drawn at, for models that do not record it.
    """
    points = read_imod_model(path, like=like, model_voxel_size_nm=model_voxel_size_nm)
    return Annotation(
        points=points,
        labels=points_to_labels(points, like.shape, grouping=grouping),
        membrane=points_to_sheet(points, like.shape),
    )


def read_mask(path: str | os.PathLike, like: Tomogram, role: str) -> np.ndarray:
    """A mask from an MRC (non-zero voxels) or an IMOD model drawn on ``like``.

    From a model, open contours (a membrane traced slice by slice) give the mask when there
    are any; otherwise the filled closed outlines do (a region drawn slice by slice).

    Parameters
    ----------
    path : path
        ``.mod`` model, or a volume of ``like``'s shape (MRC, TIFF, OME-Zarr).
    like : Tomogram
        The tomogram the mask belongs to.
    role : str
        What the mask is (e.g. "active-zone mask"), for the error messages.

    Returns
    -------
    numpy.ndarray of bool, shape (z, y, x) of ``like``

    Raises
    ------
    InputFileError
        For a volume of another shape, or an empty mask.
    """
    from pathlib import Path

    from analysis.errors import InputFileError

    path = Path(path)
    if path.suffix.lower() == ".mod":
        annotation = read_annotation(path, like=like, grouping="object")
        mask = annotation.membrane if annotation.membrane.any() else annotation.labels > 0
    else:
        # a mask's own header voxel size does not matter (often unset, or IMOD's 1 Å): it
        # must only have the tomogram's shape
        volume = read_tomogram(path, mmap=True, voxel_size_nm=like.voxel_size_nm)
        if volume.shape != like.shape:
            raise InputFileError(
                path, f"{role} of shape {volume.shape}; the tomogram's is {like.shape}"
            )
        mask = np.asarray(volume.data) != 0
    if not mask.any():
        raise InputFileError(path, f"the {role} is empty")
    return mask


__all__ = [
    "GROUPINGS",
    "POINT_COLUMNS",
    "VESICLE_COLUMNS",
    "Annotation",
    "MRCHeaderWarning",
    "Tomogram",
    "atomic_output",
    "atomic_outputs",
    "centre_voxels",
    "tomogram_stem",
    "label_table",
    "paint_ball",
    "model_voxel_size_nm",
    "open_mrc_output",
    "points_to_labels",
    "points_to_sheet",
    "read_annotation",
    "read_imod_model",
    "read_mask",
    "read_tomogram",
    "read_vesicle_table",
    "write_mrc",
    "write_vesicle_model",
]
