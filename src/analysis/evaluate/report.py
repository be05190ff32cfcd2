"""Scoring one segmentation against its truth, and summarising many as the paper does."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import InputFileError, ParameterError
from analysis.evaluate.matching import detection_scores, match_vesicles
from analysis.evaluate.metrics import dice_score, soft_dice
from analysis.evaluate.misses import miss_causes
from analysis.io import (
    centre_voxels,
    label_table,
    read_annotation,
    read_like,
    read_tomogram,
    read_vesicle_table,
)

#: The scores of one tomogram, in the order of ``analysis evaluate --json`` (DESIGN.md).
SCORE_KEYS = (
    "dice",
    "mask_dice",
    "precision",
    "recall",
    "f1",
    "delta_d",
    "delta_c_nm",
    "n_true",
    "n_pred",
)

#: CryoVesNet's published means on real tomograms, against the authors' manual segmentations
#: (Khosrozadeh et al., J Cell Biol 224(1) e202402169; book/references.bib): its test set of nine
#: rat-synaptosome tomograms and its generalisation set of twelve mouse-neuron tomograms.
REFERENCE = pd.DataFrame(
    {
        "data": ["rat synaptosomes", "mouse neurons"],
        "mask_dice": [0.78, 0.71],
        "dice": [0.85, 0.82],
        "f1": [0.963, 0.902],
        "delta_d": [0.07, 0.06],
        "delta_c_nm": [2.33, 2.39],
    }
)


def _inside(table: pd.DataFrame, region: np.ndarray) -> pd.DataFrame:
    """Rows whose centre voxel lies in ``region``."""
    return table[region[tuple(centre_voxels(table, region.shape).T)]]


def _matched(pred_labels, truth_labels, voxel_size_nm, pred_table, truth_table, region_mask):
    """The vesicle tables of a segmentation and its truth (from the labels where not given),
    restricted to ``region_mask``, and their one-to-one matches (:func:`match_vesicles`)."""
    if pred_table is None:
        pred_table = label_table(np.asarray(pred_labels).astype(np.int64), voxel_size_nm)
    if truth_table is None:
        truth_table = label_table(np.asarray(truth_labels).astype(np.int64), voxel_size_nm)
    if region_mask is not None:
        region_mask = np.asarray(region_mask, dtype=bool)
        pred_table = _inside(pred_table, region_mask)
        truth_table = _inside(truth_table, region_mask)
    matches = match_vesicles(pred_table, truth_table, voxel_size_nm, truth_labels=truth_labels)
    return pred_table, truth_table, matches


def evaluate_segmentation(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    voxel_size_nm: float,
    *,
    pred_table: pd.DataFrame | None = None,
    truth_table: pd.DataFrame | None = None,
    probability: np.ndarray | None = None,
    region_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """All scores of one segmentation: Dice, soft mask Dice, detection and size errors.

    Parameters
    ----------
    pred_labels, truth_labels : numpy.ndarray, int, shape (z, y, x)
        One id per vesicle, 0 = background.
    voxel_size_nm : float
    pred_table, truth_table : pandas.DataFrame, optional
        Vesicle tables (DESIGN.md columns) with the ids of the label volumes; by default
        computed from the labels (centroid, equal-volume radius: :func:`analysis.io.label_table`).
    probability : numpy.ndarray, float, shape (z, y, x), optional
        The network's map; its soft Dice is reported as ``mask_dice`` (else NaN).
    region_mask : numpy.ndarray of bool, shape (z, y, x), optional
        Score only inside this region (e.g. the cytoplasm outline): voxels outside it are
        ignored, and vesicles whose centre lies outside it are left out of the detection.

    Returns
    -------
    dict
        :data:`SCORE_KEYS` plus ``n_matched``.
    """
    pred_labels = np.asarray(pred_labels)
    truth_labels = np.asarray(truth_labels).astype(np.int64)
    if pred_labels.shape != truth_labels.shape:
        raise ValueError(
            f"prediction {pred_labels.shape} and truth {truth_labels.shape} differ in shape"
        )
    if region_mask is not None:
        region_mask = np.asarray(region_mask, dtype=bool)
    pred_table, truth_table, matches = _matched(
        pred_labels, truth_labels, voxel_size_nm, pred_table, truth_table, region_mask
    )
    scores = {
        "dice": dice_score(pred_labels > 0, truth_labels > 0, region_mask),
        "mask_dice": (
            float("nan")
            if probability is None
            else soft_dice(probability, truth_labels > 0, region_mask)
        ),
        **detection_scores(matches, len(truth_table), len(pred_table)),
    }
    return {key: scores[key] for key in (*SCORE_KEYS, "n_matched")}


def outcome_volume(
    pred_labels: np.ndarray, truth_labels: np.ndarray, matches: pd.DataFrame
) -> np.ndarray:
    """Voxels coloured by detection outcome, for figures.

    Returns an int8 volume: 1 = a matched (true positive) predicted vesicle, 2 = an unmatched
    (false positive) predicted vesicle, 3 = a true vesicle nobody found (false negative),
    0 elsewhere.
    """
    out = np.zeros(pred_labels.shape, np.int8)
    missed = ~np.isin(truth_labels, matches["true_id"].to_numpy()) & (truth_labels > 0)
    out[missed] = 3
    found = np.isin(pred_labels, matches["pred_id"].to_numpy()) & (pred_labels > 0)
    out[(pred_labels > 0) & ~found] = 2
    out[found] = 1
    return out


def outcome_table(pred: pd.DataFrame, truth: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """Predicted and missed true vesicles in one table with an ``outcome`` column.

    Rows of ``pred`` are ``"true positive"`` (matched) or ``"false positive"``; rows of
    ``truth`` that no prediction matched are added as ``"missed"``. Positions and radii are
    those of the respective table (for :func:`analysis.plotting.sphere_sections`).
    """
    columns = ["vesicle_id", "z_vox", "y_vox", "x_vox", "radius_vox"]
    found = pred["vesicle_id"].isin(matches["pred_id"])
    predicted = pred[columns].assign(outcome=np.where(found, "true positive", "false positive"))
    missed = truth.loc[~truth["vesicle_id"].isin(matches["true_id"]), columns]
    return pd.concat([predicted, missed.assign(outcome="missed")], ignore_index=True)


def evaluate_files(pred_labels: str | os.PathLike, truth: str | os.PathLike, **options):
    """:func:`evaluate_segmentation` of files: ``analysis evaluate``.

    ``pred_labels`` (``STEM_labels.mrc``), ``truth`` (an IMOD ``.mod`` or a label MRC) and the
    keyword ``options`` (``probability``, ``region_mask``, ``pred_table``,
    ``model_voxel_size_nm``) are those of :func:`read_evaluation`; the kept rows of
    ``pred_table`` give the fitted centres and radii. Returns the scores' dict.
    """
    return evaluate_inputs(read_evaluation(pred_labels, truth, **options))


def evaluate_inputs(inputs: dict) -> dict[str, float]:
    """:func:`evaluate_segmentation` of what :func:`read_evaluation` read (the kept rows of
    its table give the fitted centres and radii)."""
    extra = {k: inputs[k] for k in ("probability", "region_mask") if inputs[k] is not None}
    if inputs["table"] is not None:
        extra["pred_table"] = kept_rows(inputs["table"])
    return evaluate_segmentation(
        inputs["pred_labels"], inputs["truth_labels"], inputs["voxel_size_nm"], **extra
    )


def kept_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The kept vesicles of a vesicle table (all rows of a table without ``kept``)."""
    return table[table["kept"].astype(bool)] if "kept" in table else table


def read_evaluation(
    pred_labels: str | os.PathLike,
    truth: str | os.PathLike,
    *,
    probability: str | os.PathLike | None = None,
    region_mask: str | os.PathLike | None = None,
    pred_table: str | os.PathLike | None = None,
    model_voxel_size_nm: float | None = None,
) -> dict:
    """The arrays behind ``analysis evaluate``, read and checked against each other.

    Parameters
    ----------
    pred_labels : path
        ``STEM_labels.mrc`` from ``analysis segment``; it fixes the shape and voxel size.
    truth : path
        The manual annotation: an IMOD ``.mod`` (rasterised onto the prediction's grid, at any
        binning, see :func:`analysis.io.read_annotation`) or a label ``.mrc`` of the same shape.
    probability, region_mask : path, optional
        ``STEM_probability.mrc`` (for ``mask_dice``); a mask MRC to score inside.
    pred_table : path, optional
        ``STEM_vesicles.csv`` (all rows, dropped ones included).
    model_voxel_size_nm : float, optional
        Voxel size a ``.mod`` was drawn at, when the model does not record it.

    Returns
    -------
    dict
        ``pred_labels`` and ``truth_labels`` (int64, z, y, x, the truth rasterised onto the
        prediction's grid), ``voxel_size_nm``, ``probability`` (float) and ``region_mask``
        (bool) or None, ``table`` (the whole vesicle table, dropped rows included) or None.
    """
    pred = read_tomogram(pred_labels)
    truth = Path(truth)
    if truth.suffix.lower() == ".mod":
        truth_labels = read_annotation(
            truth, like=pred, model_voxel_size_nm=model_voxel_size_nm
        ).labels
    else:
        truth_labels = np.asarray(read_like(truth, pred, "truth", like_role="prediction").data)
    out = {
        "pred_labels": np.asarray(pred.data).astype(np.int64),
        "truth_labels": np.asarray(truth_labels).astype(np.int64),
        "voxel_size_nm": pred.voxel_size_nm,
        "probability": None,
        "region_mask": None,
        "table": None if pred_table is None else read_vesicle_table(pred_table),
    }
    for key, path in (("probability", probability), ("region_mask", region_mask)):
        if path is not None:
            volume = read_like(path, pred, key.replace("_", " "), like_role="prediction")
            out[key] = volume.data if key == "probability" else volume.data > 0
    return out


def summarise(per_tomogram: pd.DataFrame, columns=None) -> pd.DataFrame:
    """Mean and SD over tomograms of each score, as the paper's tables give them.

    Parameters
    ----------
    per_tomogram : pandas.DataFrame
        One row per tomogram (e.g. the dicts of :func:`evaluate_segmentation`).
    columns : list of str, optional
        Scores to summarise (default: the float scores of :data:`SCORE_KEYS` present).

    Returns
    -------
    pandas.DataFrame
        Index = score, columns ``mean``, ``sd`` (sample SD, NaN for one tomogram), ``n``.
    """
    if columns is None:
        columns = [k for k in SCORE_KEYS if k in per_tomogram and not k.startswith("n_")]
    values = per_tomogram[list(columns)].astype(float)
    return pd.DataFrame({"mean": values.mean(), "sd": values.std(ddof=1), "n": values.count()})


#: The cross-domain benchmark of the shipped network, shipped beside its weights (a model card):
#: ``benchmarks/cross_domain.py`` pooled per (simulator, row, network) over two unseen seeds.
CROSS_DOMAIN_TABLE = Path(__file__).resolve().parents[1] / "weights" / "cross_domain.csv"


def cross_domain_scores(path: str | os.PathLike = CROSS_DOMAIN_TABLE) -> pd.DataFrame:
    """The cross-domain benchmark table: one row per (simulator, row, network).

    Columns ``simulator`` ("testsim": the independent simulator, never trained on; "generator":
    the training generator's physics), ``row`` (the shift), ``description``, ``network``,
    ``precision``, ``recall``, ``f1``, ``dice``, ``n_true``, ``n_pred``, ``n_matched``,
    ``network_sha256``, and ``match_spectrum`` (whether the network's tomograms were
    spectrum-matched first, as the package runs it by default: the shipped network's are).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no cross-domain benchmark table here")
    return pd.read_csv(path)


def explain_misses(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    voxel_size_nm: float,
    candidates: pd.DataFrame,
    *,
    pred_table: pd.DataFrame | None = None,
    probability: np.ndarray | None = None,
    region_mask: np.ndarray | None = None,
    threshold: float = 0.5,
    min_fraction: float = 0.2,
) -> pd.DataFrame:
    """:func:`~analysis.evaluate.miss_causes` of the true vesicles that
    :func:`evaluate_segmentation` counts as missed, matched as it matches them.

    ``pred_labels``, ``truth_labels``, ``voxel_size_nm``, ``pred_table``, ``probability`` and
    ``region_mask`` are those of :func:`evaluate_segmentation`; ``candidates``, ``threshold``
    and ``min_fraction`` those of :func:`~analysis.evaluate.miss_causes`. Returns its table.
    """
    _, truth_table, matches = _matched(
        pred_labels, truth_labels, voxel_size_nm, pred_table, None, region_mask
    )
    missed = truth_table.loc[~truth_table["vesicle_id"].isin(matches["true_id"]), "vesicle_id"]
    return miss_causes(
        missed,
        truth_labels,
        pred_labels,
        candidates,
        probability=probability,
        threshold=threshold,
        min_fraction=min_fraction,
    )


def explain_inputs(inputs: dict, threshold: float = 0.5) -> pd.DataFrame:
    """:func:`explain_misses` of what :func:`read_evaluation` read; its
    vesicle table (with the dropped rows) is required."""
    table = inputs["table"]
    if table is None or "kept" not in table or "drop_reason" not in table:
        raise ParameterError(
            "explaining misses needs the whole vesicle table (STEM_vesicles.csv, with its "
            "kept and drop_reason columns)"
        )
    return explain_misses(
        inputs["pred_labels"],
        inputs["truth_labels"],
        inputs["voxel_size_nm"],
        table,
        pred_table=kept_rows(table),
        probability=inputs["probability"],
        region_mask=inputs["region_mask"],
        threshold=threshold,
    )
