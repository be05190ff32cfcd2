"""How close a segmentation is to the manual one, in the reference's own measures.

Voxel overlap (:mod:`.metrics`: Dice of the final labels, soft Dice of the network's map),
per-vesicle detection (:mod:`.matching`: a true vesicle is found when a predicted centre lies
inside it, one-to-one by the Hungarian algorithm; precision, recall, F1; diameter deviation
δd and centre error Δc; connectors and tethers by the pairs they join, and per-vesicle counts
of them against the truth) and the per-tomogram and summary tables (:mod:`.report`).
"""

from analysis.evaluate.matching import (
    MATCH_COLUMNS,
    count_errors,
    detection_scores,
    filament_curve,
    filament_detection,
    match_vesicles,
    merges_and_splits,
)
from analysis.evaluate.metrics import BORDER_NM, dice_score, interior_mask, soft_dice
from analysis.evaluate.report import (
    REFERENCE,
    SCORE_KEYS,
    cross_domain_scores,
    evaluate_files,
    evaluate_segmentation,
    outcome_table,
    outcome_volume,
    summarise,
)

__all__ = [
    "BORDER_NM",
    "MATCH_COLUMNS",
    "REFERENCE",
    "SCORE_KEYS",
    "count_errors",
    "detection_scores",
    "cross_domain_scores",
    "dice_score",
    "evaluate_files",
    "evaluate_segmentation",
    "filament_curve",
    "filament_detection",
    "interior_mask",
    "match_vesicles",
    "merges_and_splits",
    "outcome_table",
    "outcome_volume",
    "soft_dice",
    "summarise",
]
