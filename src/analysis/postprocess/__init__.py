"""From a probability map to whole, individual, roughly spherical vesicles.

:func:`segment_vesicles` runs the steps in order — threshold (fixed, or CryoVesNet's
shell-density criterion, :mod:`.threshold`), connected components and splitting of touching
vesicles (:mod:`.separate`), a sphere fit per vesicle from the tomogram's radial profile
(:mod:`.spheres`), outlier removal and overlap resolution (:mod:`.outliers`) — and returns
the vesicle table and a label volume of whole spheres. :func:`write_outputs` writes the files
of ``analysis segment`` (DESIGN.md), :func:`pyto_labels` the boundary volume Pyto reads.
"""

from analysis.postprocess.outliers import flag_outliers, resolve_overlaps
from analysis.postprocess.outputs import (
    OUTPUT_SUFFIXES,
    PYTO_AZ_ID,
    PYTO_FIRST_VESICLE_ID,
    PYTO_REGION_ID,
    VESICLE_OUTPUTS,
    output_files,
    pyto_labels,
    write_outputs,
)
from analysis.postprocess.separate import label_vesicles
from analysis.postprocess.spheres import fit_sphere, fit_vesicles, radial_profile
from analysis.postprocess.threshold import shell_density_threshold, threshold_mask
from analysis.postprocess.vesicles import (
    TABLE_COLUMNS,
    WORK_MEMORY_BYTES,
    Vesicles,
    paint_spheres,
    segment_vesicles,
)

__all__ = [
    "OUTPUT_SUFFIXES",
    "VESICLE_OUTPUTS",
    "WORK_MEMORY_BYTES",
    "output_files",
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
