"""Manual annotations drawn on a tomogram: an IMOD model rasterised, or a mask of its shape."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputFileError
from analysis.io.imod import read_imod_model
from analysis.io.rasterise import points_to_labels, points_to_sheet
from analysis.io.tomogram import Tomogram, read_like


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
    path = Path(path)
    if path.suffix.lower() == ".mod":
        annotation = read_annotation(path, like=like, grouping="object")
        mask = annotation.membrane if annotation.membrane.any() else annotation.labels > 0
    else:
        mask = np.asarray(read_like(path, like, role, mmap=True).data) != 0
    if not mask.any():
        raise InputFileError(path, f"the {role} is empty")
    return mask
