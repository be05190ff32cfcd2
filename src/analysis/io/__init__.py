"""Tomogram and IMOD model input/output.

Everything returned here is in (z, y, x) voxel order with lengths in nm; IMOD's (x, y, z) order
and the MRC header's Å appear only inside this package.
"""

from __future__ import annotations

from analysis.io.annotation import Annotation, read_annotation, read_mask
from analysis.io.atomic import atomic_output, atomic_outputs
from analysis.io.formats import TOMOGRAM_SUFFIXES, tomogram_stem
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
    TiltSeriesWarning,
    Tomogram,
    open_mrc_output,
    read_like,
    read_tomogram,
    write_mrc,
)

__all__ = [
    "GROUPINGS",
    "POINT_COLUMNS",
    "TOMOGRAM_SUFFIXES",
    "VESICLE_COLUMNS",
    "Annotation",
    "MRCHeaderWarning",
    "TiltSeriesWarning",
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
    "read_like",
    "read_mask",
    "read_tomogram",
    "read_vesicle_table",
    "write_mrc",
    "write_vesicle_model",
]
