"""Per-vesicle detection: which predicted vesicle is which true one.

A true vesicle is *found* when a predicted centre lies inside it (CryoVesNet's criterion).
Several predicted centres may lie in one true vesicle and, where true spheres overlap, one
centre in several; the one-to-one assignment that maximises the number of matches and,
among those, minimises the total centre distance is found with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from analysis.io import centre_voxels

ZYX = ["z_vox", "y_vox", "x_vox"]
MATCH_COLUMNS = [
    "true_id",
    "pred_id",
    "distance_nm",
    "true_radius_nm",
    "pred_radius_nm",
]


def match_vesicles(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    voxel_size_nm: float,
    *,
    truth_labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """One-to-one matches between predicted and true vesicles.

    Parameters
    ----------
    pred, truth : pandas.DataFrame
        Vesicle tables (DESIGN.md columns ``vesicle_id``, ``z_vox``, ``y_vox``, ``x_vox``,
        ``radius_vox``).
    voxel_size_nm : float
    truth_labels : numpy.ndarray, int, shape (z, y, x), optional
        The true label volume. When given, "inside" means the predicted centre's voxel
        carries the true vesicle's id (right for drawn, non-spherical outlines); otherwise
        it means closer to the true centre than the true radius.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MATCH_COLUMNS`, one row per matched pair, ordered by ``true_id``.
    """
    if not len(pred) or not len(truth):
        return pd.DataFrame(columns=MATCH_COLUMNS)
    p_xyz = pred[ZYX].to_numpy(float)
    t_xyz = truth[ZYX].to_numpy(float)
    t_radius = truth["radius_vox"].to_numpy(float)
    t_ids = truth["vesicle_id"].to_numpy()
    if truth_labels is not None:
        voxel = centre_voxels(p_xyz, truth_labels.shape)
        inside_id = truth_labels[tuple(voxel.T)]
        row_of = {v: i for i, v in enumerate(t_ids)}
        pairs = [(row_of[v], j) for j, v in enumerate(inside_id) if v in row_of]
    else:
        tree = cKDTree(p_xyz)
        pairs = [
            (i, j)
            for i, near in enumerate(tree.query_ball_point(t_xyz, t_radius))
            for j in near
            if np.linalg.norm(p_xyz[j] - t_xyz[i]) < t_radius[i]
        ]
    if not pairs:
        return pd.DataFrame(columns=MATCH_COLUMNS)
    rows, cols = np.array(pairs).T
    dist = np.linalg.norm(p_xyz[cols] - t_xyz[rows], axis=1)
    # Allowed pairs cost their distance, forbidden ones more than any set of allowed ones,
    # so the assignment first maximises the matches, then minimises the distances.
    forbidden = 1.0 + dist.sum() + len(dist) * 1e3
    cost = np.full((len(truth), len(pred)), forbidden)
    cost[rows, cols] = dist
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < forbidden
    r, c = r[ok], c[ok]
    return pd.DataFrame(
        {
            "true_id": t_ids[r],
            "pred_id": pred["vesicle_id"].to_numpy()[c],
            "distance_nm": np.linalg.norm(p_xyz[c] - t_xyz[r], axis=1) * voxel_size_nm,
            "true_radius_nm": t_radius[r] * voxel_size_nm,
            "pred_radius_nm": pred["radius_vox"].to_numpy(float)[c] * voxel_size_nm,
        }
    )


def detection_scores(matches: pd.DataFrame, n_true: int, n_pred: int) -> dict[str, float]:
    """Precision, recall, F1, diameter deviation δd and centre error Δc (nm) of matches.

    ``delta_d`` is the mean of ``1 − min(d_pred, d_true) / max(d_pred, d_true)`` over matched
    pairs (0 = same sizes) and ``delta_c_nm`` the mean centre distance, as in CryoVesNet;
    both are NaN without matches. Precision is 1 without predictions, recall 1 without truth.
    """
    tp = len(matches)
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if tp:
        small = np.minimum(matches["pred_radius_nm"], matches["true_radius_nm"])
        large = np.maximum(matches["pred_radius_nm"], matches["true_radius_nm"])
        delta_d = float(np.mean(1 - small / large))
        delta_c = float(matches["distance_nm"].mean())
    else:
        delta_d = delta_c = float("nan")
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "delta_d": delta_d,
        "delta_c_nm": delta_c,
        "n_true": int(n_true),
        "n_pred": int(n_pred),
        "n_matched": tp,
    }


def merges_and_splits(
    pred_labels: np.ndarray, truth_labels: np.ndarray, *, min_fraction: float = 0.2
) -> dict[str, int]:
    """Count predicted labels that merge true vesicles, and true vesicles split in pieces.

    A predicted label *covers* a true vesicle when their overlap holds at least
    ``min_fraction`` of the true vesicle's voxels. ``merged`` counts predicted labels covering
    two or more true vesicles; ``split`` counts true vesicles covered by two or more
    predicted labels.
    """
    pred = np.asarray(pred_labels).astype(np.int64).ravel()
    truth = np.asarray(truth_labels).astype(np.int64).ravel()
    if pred.shape != truth.shape:
        raise ValueError("prediction and truth differ in shape")
    both = (pred > 0) & (truth > 0)
    pairs, overlap = np.unique(
        np.column_stack([pred[both], truth[both]]), axis=0, return_counts=True
    )
    size = np.bincount(truth)
    covers = pairs[overlap >= min_fraction * size[pairs[:, 1]]]
    per_pred = np.unique(covers[:, 0], return_counts=True)[1]
    per_true = np.unique(covers[:, 1], return_counts=True)[1]
    return {"merged": int((per_pred >= 2).sum()), "split": int((per_true >= 2).sum())}


def filament_key(kind: str, vesicle_a, vesicle_b) -> tuple:
    """The pair of boundaries a filament joins, as the filament scores count it: a
    connector's two vesicles in rising order, a tether's vesicle and 0 (the AZ membrane)."""
    if kind == "connector":
        return (kind, *sorted((int(vesicle_a), int(vesicle_b))))
    return (kind, int(vesicle_a), 0)


def _keys(table: pd.DataFrame, mapping: dict | None = None) -> set:
    """The pairs of a filament table (:func:`filament_key`), its vesicle ids mapped by
    ``mapping`` (unmatched ones to ids no true filament has)."""
    out = set()
    for kind, a, b in table[["kind", "vesicle_a", "vesicle_b"]].itertuples(index=False):
        if mapping is not None:
            a = mapping.get(a, -1)
            b = 0 if b == 0 else mapping.get(b, -2)
        out.add(filament_key(kind, a, b))
    return out


def filament_detection(
    found: pd.DataFrame, truth: pd.DataFrame, *, vesicle_map: dict | None = None
) -> dict[str, float]:
    """Recall and precision of connectors and tethers, by the boundaries they join.

    A found filament is right when a true one of the same kind joins the same two vesicles
    (or the same vesicle and the AZ membrane, ``vesicle_b = 0``). Several found filaments
    between the same pair count once.

    Parameters
    ----------
    found, truth : pandas.DataFrame
        Filament tables with ``kind``, ``vesicle_a``, ``vesicle_b``.
    vesicle_map : dict, optional
        Found vesicle id → true vesicle id (e.g. from :func:`match_vesicles`), when the
        filaments were found between segmented rather than true vesicles; filaments of
        unmatched vesicles then count as wrong.

    Returns
    -------
    dict
        ``recall``, ``precision``, ``f1``, ``n_true``, ``n_found`` (distinct pairs), and the
        same per kind (``connector_recall``, ``tether_precision``, …).
    """

    true_keys, found_keys = _keys(truth), _keys(found, vesicle_map)
    scores = {}
    for label, subset in (("", None), ("connector_", "connector"), ("tether_", "tether")):
        t = {k for k in true_keys if subset in (None, k[0])}
        f = {k for k in found_keys if subset in (None, k[0])}
        hit = len(t & f)
        recall = hit / len(t) if t else 1.0
        precision = hit / len(f) if f else 1.0
        scores[f"{label}recall"] = recall
        scores[f"{label}precision"] = precision
        if not label:
            f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
            scores.update(f1=f1, n_true=len(t), n_found=len(f))
    return scores


def filaments_found(
    found: pd.DataFrame, truth: pd.DataFrame, *, vesicle_map: dict | None = None
) -> pd.DataFrame:
    """The true filaments with a ``found`` column: whether a found filament joins the same
    pair of boundaries, as :func:`filament_detection` counts a hit (arguments as there).

    Grouping its ``found`` column by any property of the true filaments (their direction,
    length, distance to the AZ) gives the recall by that property.
    """
    hits = _keys(found, vesicle_map)
    out = truth.copy()
    pairs = out[["kind", "vesicle_a", "vesicle_b"]].itertuples(index=False)
    out["found"] = [filament_key(*pair) in hits for pair in pairs]
    return out


def count_errors(
    found: pd.DataFrame, truth: pd.DataFrame, columns=("n_connectors", "n_tethers")
) -> dict[str, float]:
    """Per-vesicle counts against the truth: what a table of counts per vesicle gets wrong.

    Parameters
    ----------
    found, truth : pandas.DataFrame
        ``vesicle_id`` and the count ``columns``, one row per vesicle (e.g.
        :func:`analysis.active_zone.count_per_vesicle` of the found filaments and of the true
        ones); a vesicle missing from one table counts 0 there.
    columns : sequence of str
        The counts compared.

    Returns
    -------
    dict
        For each column, its name without ``n_`` (``connectors``, …) followed by ``_true``
        and ``_found`` (sums over the vesicles: a connector counts at both ends), ``_mae`` (mean absolute error per vesicle), ``_bias`` (mean
        of found − true) and ``_exact`` (fraction of vesicles with the true count); ``exact``
        (fraction with every count right) and ``n_vesicles``.
    """
    columns = list(columns)
    both = truth[["vesicle_id", *columns]].merge(
        found[["vesicle_id", *columns]], on="vesicle_id", how="outer", suffixes=("_t", "_f")
    )
    both = both.fillna(0)
    scores: dict[str, float] = {}
    right = np.ones(len(both), bool)
    for column in columns:
        t, f = both[f"{column}_t"].to_numpy(float), both[f"{column}_f"].to_numpy(float)
        name = column.removeprefix("n_")
        error = f - t
        right &= error == 0
        scores[f"{name}_true"] = int(t.sum())
        scores[f"{name}_found"] = int(f.sum())
        scores[f"{name}_mae"] = float(np.abs(error).mean()) if len(both) else 0.0
        scores[f"{name}_bias"] = float(error.mean()) if len(both) else 0.0
        scores[f"{name}_exact"] = float((error == 0).mean()) if len(both) else 1.0
    scores["exact"] = float(right.mean()) if len(both) else 1.0
    scores["n_vesicles"] = len(both)
    return scores


def filament_curve(
    found: pd.DataFrame,
    truth: pd.DataFrame,
    thresholds=None,
    *,
    by: str = "threshold",
    vesicle_map: dict | None = None,
) -> pd.DataFrame:
    """Recall and precision of the filaments found up to each threshold: the trade-off curve.

    Hierarchical thresholding takes each filament at the darkest threshold where it joins
    its boundaries, and nothing found at one threshold depends on brighter ones; so a run
    whose threshold series stops at ``t`` finds exactly the filaments of the full run with
    ``threshold <= t``, and one run gives the whole curve. The same holds for the
    straight-path test: a run with ``max_path_grey=None`` gives, through ``by="path_grey"``,
    what every ``max_path_grey`` would keep.

    Parameters
    ----------
    found, truth : pandas.DataFrame
        Filament tables (``found`` with the ``threshold`` column of
        :func:`analysis.active_zone.find_filaments`).
    thresholds : sequence of float, optional
        The last thresholds to score; by default every value of ``by`` in ``found``.
    by : str
        The column thresholded: ``"threshold"`` (the hierarchy's) or ``"path_grey"``.
    vesicle_map : dict, optional
        As for :func:`filament_detection`.

    Returns
    -------
    pandas.DataFrame
        ``max_threshold`` and the scores of :func:`filament_detection`, one row per threshold.
    """
    levels = sorted(set(found[by]) if thresholds is None else thresholds)
    rows = [
        {
            "max_threshold": float(t),
            **filament_detection(found[found[by] <= t + 1e-9], truth, vesicle_map=vesicle_map),
        }
        for t in levels
    ]
    return pd.DataFrame(rows)
