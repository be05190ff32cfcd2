"""Why a true vesicle was missed: by the network, or by the post-processing?

A low recall has two very different remedies. If the network never marked a vesicle, no
post-processing setting brings it back: the network needs adapting or fine-tuning (chapter 7).
If the network marked it and a later step lost it, a setting of :func:`segment_vesicles
<analysis.postprocess.segment_vesicles>` is to blame, and the candidate's ``drop_reason`` says
which. :func:`miss_causes` sorts every missed true vesicle into one of :data:`MISS_CAUSES`,
checked in this order:

1. **dropped** — a candidate centred in it was dropped by the post-processing (the candidate
   table's ``drop_reason``: too small, profile correlation, …);
2. **merged** — a kept vesicle covers it (at least ``min_fraction`` of its voxels) but is
   centred in, and matched to, a neighbour;
3. **not segmented** — less than ``min_fraction`` of its voxels lie above the threshold in the
   probability map: the network did not see it (only with a map);
4. **no candidate** — none of the above: enough voxels above the threshold, but no candidate
   centred in it (pieces too small to be a vesicle, or a split that went wrong). Without a
   probability map, "not segmented" ones are counted here too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from analysis.io import centre_voxels

#: The causes of a miss, in the order they are checked (see the module notes).
MISS_CAUSES = ("dropped", "merged", "not segmented", "no candidate")

#: Columns of :func:`miss_causes`' table.
MISS_COLUMNS = [
    "true_id",
    "cause",
    "drop_reason",
    "candidate_id",
    "covered_by",
    "above_threshold",
]


def miss_causes(
    missed_ids,
    truth_labels: np.ndarray,
    pred_labels: np.ndarray,
    candidates: pd.DataFrame,
    *,
    probability: np.ndarray | None = None,
    threshold: float = 0.5,
    min_fraction: float = 0.2,
) -> pd.DataFrame:
    """The cause of each missed true vesicle (see :data:`MISS_CAUSES`).

    Parameters
    ----------
    missed_ids : sequence of int
        Ids of the true vesicles nobody matched (:func:`analysis.evaluate.explain_misses`
        finds them as the scores do).
    truth_labels : numpy.ndarray, int, shape (z, y, x)
        True vesicles, one id each.
    pred_labels : numpy.ndarray, int, shape (z, y, x)
        The kept vesicles (``STEM_labels.mrc``), one id each.
    candidates : pandas.DataFrame
        The vesicle table with its dropped rows (``STEM_vesicles.csv``, or
        ``segment_vesicles(...).table``): ``vesicle_id``, ``z_vox``, ``y_vox``, ``x_vox``,
        ``radius_vox``, ``kept``, ``drop_reason``.
    probability : numpy.ndarray, float, shape (z, y, x), optional
        The network's map; tells "not segmented" from "no candidate".
    threshold : float
        The probability threshold the segmentation used.
    min_fraction : float
        Share of a true vesicle's voxels that counts as covered (kept vesicle) or seen
        (probability above ``threshold``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MISS_COLUMNS`, one row per missed vesicle in the order given:
        ``drop_reason`` and ``candidate_id`` of the dropped candidate (the largest if
        several; "" and 0 otherwise), ``covered_by`` the kept vesicle covering most of it (0 if
        none covers ``min_fraction``), ``above_threshold`` the share of its voxels above the
        threshold (NaN without a map).
    """
    truth_labels = np.asarray(truth_labels)
    pred_labels = np.asarray(pred_labels)
    if truth_labels.shape != pred_labels.shape:
        raise ValueError(f"truth {truth_labels.shape} and prediction {pred_labels.shape} differ")
    missed_ids = [int(i) for i in missed_ids]
    dropped = candidates[~candidates["kept"].astype(bool)]
    # a candidate whose fit failed has no centre to place it by
    dropped = dropped[np.isfinite(dropped[["z_vox", "y_vox", "x_vox"]].to_numpy(float)).all(axis=1)]
    # a dropped candidate belongs to the true vesicle its centre voxel lies in
    inside = truth_labels[tuple(centre_voxels(dropped, truth_labels.shape).T)]
    # each vesicle is looked at inside its bounding box, not over the whole volume
    boxes = ndimage.find_objects(truth_labels.astype(np.int64, copy=False))
    rows = []
    for true_id in missed_ids:
        box = boxes[true_id - 1] if 0 < true_id <= len(boxes) else None
        if box is None:
            raise ValueError(f"true vesicle {true_id} is not in the truth labels")
        voxels = truth_labels[box] == true_id
        size = int(np.count_nonzero(voxels))
        ids, counts = np.unique(pred_labels[box][voxels], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]
        covered_by = (
            int(ids[np.argmax(counts)]) if len(ids) and counts.max() >= min_fraction * size else 0
        )
        above = (
            float(np.count_nonzero(np.asarray(probability[box])[voxels] > threshold)) / size
            if probability is not None
            else float("nan")
        )
        mine = dropped[inside == true_id]
        if len(mine):
            largest = mine.loc[mine["radius_vox"].astype(float).fillna(-1).idxmax()]
            cause, reason, candidate = (
                "dropped",
                str(largest["drop_reason"]),
                int(largest["vesicle_id"]),
            )
        else:
            reason, candidate = "", 0
            if covered_by:
                cause = "merged"
            elif above < min_fraction:  # False for NaN: without a map, "no candidate"
                cause = "not segmented"
            else:
                cause = "no candidate"
        rows.append((true_id, cause, reason, candidate, covered_by, above))
    return pd.DataFrame(rows, columns=MISS_COLUMNS)


def summarise_misses(misses: pd.DataFrame) -> str:
    """One line: how many misses of each cause, drop reasons in brackets."""
    if not len(misses):
        return "no true vesicle was missed"
    parts = []
    for cause in MISS_CAUSES:
        rows = misses[misses["cause"] == cause]
        if not len(rows):
            continue
        text = f"{cause} {len(rows)}"
        if cause == "dropped":
            reasons = rows["drop_reason"].value_counts()
            text += " (" + ", ".join(f"{r} {n}" for r, n in reasons.items()) + ")"
        parts.append(text)
    return f"{len(misses)} missed: " + "; ".join(parts)
