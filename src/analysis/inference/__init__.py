"""Whole-tomogram inference: rescaling, tiled blended prediction, test-time augmentation.

:func:`predict` takes a tomogram of any size and voxel size and returns the vesicle
probability map of the same shape; :func:`predict_file` does the same from file to file
through memory maps, for tomograms larger than memory.
"""

from analysis.inference.predict import (
    TTA_MODES,
    check_voxel_size,
    predict,
    predict_file,
)
from analysis.inference.rescale import resampling_matrix, rescale
from analysis.inference.tiling import (
    BLEND_MODES,
    blend_profile,
    blend_window,
    sliding_window,
    tile_grid,
    tile_starts,
)

__all__ = [
    "BLEND_MODES",
    "TTA_MODES",
    "blend_profile",
    "blend_window",
    "check_voxel_size",
    "predict",
    "predict_file",
    "rescale",
    "resampling_matrix",
    "sliding_window",
    "tile_grid",
    "tile_starts",
]
