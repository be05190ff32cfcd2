"""Experimental groups compared, with the synapse as the unit.

:mod:`.pooling`: a study table (tomograms and their groups), checked before any work, and
the per-tomogram tables of the active-zone analysis pooled into one per kind.
:mod:`.measures`: the measures of the field, one value per synapse (proximal vesicles,
tethered and connected fractions, tethers and connectors per vesicle, filament lengths,
vesicle density by distance).
:mod:`.comparisons`: per-synapse Welch and permutation tests, hierarchical bootstrap
intervals, a cluster-robust GLM, a mixed model, per-bin tests with multiple-comparison
control, and the pooled-vesicle χ² (for comparison only).
:mod:`.report`: all of it for a study, as ``analysis compare`` writes it.
:mod:`.power`: experiments simulated at the level of the tables (false-positive rates,
coverage, power).
:mod:`.study`: synthetic experiments with known effects, and their exact truth.
"""

from analysis.stats.comparisons import (
    cluster_glm,
    compare_bins,
    group_order,
    hierarchical_bootstrap,
    mixed_model,
    pooled_chi2,
    synapse_test,
)
from analysis.stats.measures import (
    MEASURES,
    PROXIMAL_NM,
    layer_density,
    proximal,
    synapse_bins,
    synapse_measures,
)
from analysis.stats.pooling import STUDY_COLUMNS, pool, read_pooled, read_study, study_items
from analysis.stats.power import (
    SynapseModel,
    error_rates,
    experiment_tests,
    fit_synapse_model,
    population_effects,
    power_curve,
    simulate_experiment,
    tethered_tests,
    with_effect,
)
from analysis.stats.report import REPORT_FILES, compare_study, write_report
from analysis.stats.study import (
    GroupSpec,
    draw_geometries,
    phantom_tables,
    truth_tables,
    truth_vesicles,
    write_study,
)

__all__ = [
    "MEASURES",
    "PROXIMAL_NM",
    "REPORT_FILES",
    "STUDY_COLUMNS",
    "GroupSpec",
    "SynapseModel",
    "cluster_glm",
    "compare_bins",
    "compare_study",
    "draw_geometries",
    "error_rates",
    "experiment_tests",
    "fit_synapse_model",
    "group_order",
    "hierarchical_bootstrap",
    "layer_density",
    "mixed_model",
    "pool",
    "pooled_chi2",
    "phantom_tables",
    "population_effects",
    "power_curve",
    "proximal",
    "read_pooled",
    "read_study",
    "simulate_experiment",
    "synapse_bins",
    "synapse_measures",
    "synapse_test",
    "tethered_tests",
    "study_items",
    "truth_tables",
    "truth_vesicles",
    "with_effect",
    "write_report",
    "write_study",
]
