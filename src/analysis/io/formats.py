"""Which file endings are tomograms, which are tilt series, and the stem of a tomogram's name.

One list for the reader (:func:`analysis.io.read_tomogram`), the batch's folder listing
(:func:`analysis.batch.find_tomograms`) and the output names (:func:`tomogram_stem`). IMOD's
tilt series (raw ``.st``, aligned ``.ali``) are MRC files the reader refuses (a tilt series is
not a tomogram), so a folder listing leaves them out, though an IMOD project folder holds them
beside the reconstruction (``.rec``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: MRC volumes: any other ending is read as MRC too, but a folder listing takes only these.
MRC_SUFFIXES = (".mrc", ".rec", ".map")
#: TIFF stacks (OME-TIFF included).
TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
#: OME-Zarr folders.
ZARR_SUFFIXES = (".ome.zarr", ".zarr")
#: The endings of tomograms, as :func:`analysis.batch.find_tomograms` lists them.
TOMOGRAM_SUFFIXES = MRC_SUFFIXES + TIFF_SUFFIXES + ZARR_SUFFIXES
#: IMOD's endings of tilt series: raw (``.st``) and aligned (``.ali``) stacks; refused.
TILT_SERIES_SUFFIXES = (".st", ".ali")


def tomogram_stem(path: str | os.PathLike) -> str:
    """The ``STEM`` of the output names for a tomogram file: its name without the file type
    (``tomo.rec`` and ``tomo.ome.zarr`` give ``tomo``; ``syn_1.469nm.mrc`` gives
    ``syn_1.469nm``, so that names differing after a dot stay different)."""
    name = Path(path).name
    # longest first, so that tomo.ome.zarr loses .ome.zarr rather than .zarr
    for suffix in sorted(TOMOGRAM_SUFFIXES + TILT_SERIES_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name
