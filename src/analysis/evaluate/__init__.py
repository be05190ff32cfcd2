"""How close a segmentation is to the manual one, in the reference's own measures.

Voxel overlap (:mod:`.metrics`: Dice of the final labels, soft Dice of the network's map),
per-vesicle detection (:mod:`.matching`: a true vesicle is found when a predicted centre lies
inside it, one-to-one by the Hungarian algorithm; precision, recall, F1; diameter deviation
δd and centre error Δc; connectors and tethers by the pairs they join, and per-vesicle counts
of them against the truth), why each missed vesicle was missed (:mod:`.misses`: by the network
or by a post-processing step), how conspicuous the vesicles are (:mod:`analysis.contrast`,
which the generator's faint tier also uses) and the per-tomogram and summary tables
(:mod:`.report`).
"""

from analysis.contrast import vesicle_contrast
from analysis.evaluate.matching import (
    MATCH_COLUMNS,
    count_errors,
    detection_scores,
    filament_curve,
    filament_detection,
    filaments_found,
    match_vesicles,
    merges_and_splits,
)
from analysis.evaluate.metrics import BORDER_NM, dice_score, interior_mask, soft_dice
from analysis.evaluate.misses import MISS_CAUSES, MISS_COLUMNS, miss_causes, summarise_misses
from analysis.evaluate.report import (
    REFERENCE,
    SCORE_KEYS,
    cross_domain_scores,
    evaluate_files,
    evaluate_inputs,
    evaluate_segmentation,
    explain_inputs,
    explain_misses,
    kept_rows,
    outcome_table,
    outcome_volume,
    read_evaluation,
    summarise,
)

__all__ = [
    "BORDER_NM",
    "MATCH_COLUMNS",
    "MISS_CAUSES",
    "MISS_COLUMNS",
    "REFERENCE",
    "SCORE_KEYS",
    "count_errors",
    "detection_scores",
    "cross_domain_scores",
    "dice_score",
    "evaluate_files",
    "evaluate_inputs",
    "evaluate_segmentation",
    "explain_inputs",
    "explain_misses",
    "filament_curve",
    "filament_detection",
    "filaments_found",
    "interior_mask",
    "kept_rows",
    "match_vesicles",
    "vesicle_contrast",
    "miss_causes",
    "merges_and_splits",
    "outcome_table",
    "outcome_volume",
    "read_evaluation",
    "soft_dice",
    "summarise",
    "summarise_misses",
]
