"""How synaptic vesicles are organised at the active zone, measured as Pyto measures it.

:mod:`.distances`: distances of vesicle centres and membranes to the active-zone (AZ)
membrane, layers one voxel thick parallel to it with their vesicle occupancy, and counts of
proximal vesicles in distance bins, and the tethered and connected ones among them.
:mod:`.filaments`: connectors (vesicle–vesicle) and tethers (vesicle–AZ) by hierarchical
connectivity segmentation of the densities between them, each pair checked along straight
paths across its gap (:mod:`.paths`) against a cut that follows the tomogram's membrane
contrast (:mod:`.cuts`), the pieces between the same two boundaries one filament.
"""

from analysis.active_zone.analyse import (
    AZ_OUTPUT_SUFFIXES,
    ActiveZone,
    analyse_active_zone,
    analyse_files,
)
from analysis.active_zone.cuts import membrane_contrast, path_cuts
from analysis.active_zone.distances import (
    DEFAULT_BINS_NM,
    az_distance_map,
    filaments_by_distance,
    layer_profile,
    layers,
    proximal_counts,
    vesicle_distances,
)
from analysis.active_zone.filaments import (
    DEFAULT_MAX_PATH_GREY,
    DEFAULT_MERGE_NM,
    DEFAULT_THRESHOLDS,
    FILAMENT_COLUMNS,
    Filaments,
    SearchVolumes,
    angle_to_beam_deg,
    count_per_vesicle,
    find_filaments,
    remove_boundary_profiles,
    search_volumes,
)
from analysis.io import read_mask  # where it lived first; masks are read here too

__all__ = [
    "AZ_OUTPUT_SUFFIXES",
    "ActiveZone",
    "analyse_active_zone",
    "analyse_files",
    "read_mask",
    "DEFAULT_BINS_NM",
    "DEFAULT_MAX_PATH_GREY",
    "DEFAULT_MERGE_NM",
    "DEFAULT_THRESHOLDS",
    "FILAMENT_COLUMNS",
    "Filaments",
    "SearchVolumes",
    "angle_to_beam_deg",
    "az_distance_map",
    "count_per_vesicle",
    "filaments_by_distance",
    "find_filaments",
    "layer_profile",
    "layers",
    "membrane_contrast",
    "path_cuts",
    "proximal_counts",
    "remove_boundary_profiles",
    "search_volumes",
    "vesicle_distances",
]
