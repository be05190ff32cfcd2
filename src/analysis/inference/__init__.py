"""Whole-tomogram inference: rescaling, tiled blended prediction, test-time augmentation.

:func:`predict` takes a tomogram of any size and voxel size and a network
(:class:`analysis.models.Predictor`) and returns the vesicle probability map of the same
shape; :func:`predict_file` does the same from file to file through memory maps, for
tomograms larger than memory.
"""

from analysis.inference.predict import check_voxel_size, predict, predict_file, tile_function
from analysis.inference.rescale import resampling_matrix, rescale
from analysis.inference.tiling import (
    AUTO_MARGIN_VOX,
    AUTO_MAX_TILE,
    BLEND_MODES,
    blend_profile,
    blend_window,
    plan_tiles,
    sliding_window,
    tile_grid,
    tile_starts,
)

__all__ = [
    "AUTO_MARGIN_VOX",
    "AUTO_MAX_TILE",
    "BLEND_MODES",
    "blend_profile",
    "blend_window",
    "check_voxel_size",
    "predict",
    "plan_tiles",
    "predict_file",
    "rescale",
    "resampling_matrix",
    "sliding_window",
    "tile_function",
    "tile_grid",
    "tile_starts",
]
