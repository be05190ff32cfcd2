"""How well connectors and tethers are found: recall and precision on generated tomograms.

Two sets of seeded synthetic synapses (128 × 256 × 256 voxels at 2.2 nm, 160 vesicles,
filaments placed up to 4 nm off the line of closest approach of their boundaries):

* calibration, seeds 501–508 (``filtrain``): the straight-path cuts ``max_path_grey`` (one
  for connectors, one for tethers, searched together on a 0.05 SD grid) that give the best
  F1 here are the defaults of :func:`analysis.active_zone.find_filaments`;
* held out, seeds 301–303 (the book's test set): the scores reported.

The true vesicles are the boundaries, so that only the filament search is scored. One run
per tomogram with ``max_path_grey=None`` gives every cut at once
(:func:`analysis.evaluate.filament_curve`); the baseline is plain hierarchical thresholding
(Pyto's method: every piece that joins two boundaries, up to a threshold). Counts are
pooled over the tomograms of a set. Run:

    .venv/bin/python benchmarks/filament_detection.py
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from analysis.active_zone import find_filaments
from analysis.active_zone.filaments import DEFAULT_MAX_PATH_GREY
from analysis.evaluate import filament_curve, filament_detection
from analysis.io import read_tomogram
from analysis.synthetic import example_files

CALIBRATION = ("filtrain", tuple(range(501, 509)))
HELD_OUT = ("test", (301, 302, 303))
PATH_CUTS = np.round(np.arange(-2.0, -0.25, 0.05), 2)


def found_and_truth(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All candidate filaments (no path cut) of one generated tomogram, and its truth."""
    files = example_files(name, seed=seed)
    tomo = read_tomogram(files["tomogram"])
    table = find_filaments(
        tomo.data,
        read_tomogram(files["labels"]).data.astype(np.int32),
        read_tomogram(files["az_mask"]).data > 0,
        read_tomogram(files["region_mask"]).data > 0,
        tomo.voxel_size_nm,
        max_path_grey=None,
    ).table
    return table, pd.read_csv(files["filaments"])


def pooled_curve(runs, by: str, cuts=None) -> pd.DataFrame:
    """Recall, precision and F1 at each cut of column ``by``, counts pooled over ``runs``."""
    curves = []
    for found, truth in runs:
        levels = cuts if cuts is not None else sorted(set(found[by]))
        curve = filament_curve(found, truth, levels, by=by)
        curve["hits"] = curve["recall"] * curve["n_true"]
        curve["right"] = curve["precision"] * curve["n_found"]
        curves.append(curve)
    total = pd.concat(curves).groupby("max_threshold")[["hits", "n_true", "right", "n_found"]]
    out = total.sum()
    out["recall"] = out["hits"] / out["n_true"]
    out["precision"] = out["right"] / out["n_found"].clip(lower=1)
    out["f1"] = 2 * out["recall"] * out["precision"] / (out["recall"] + out["precision"])
    return out[["recall", "precision", "f1", "n_found"]].fillna(0.0)


def pooled_scores(runs, cuts: dict) -> dict:
    """Recall, precision and F1 with a path cut per kind, counts pooled over ``runs``."""
    hits = n_true = right = n_found = 0
    for found, truth in runs:
        kept = found[found["path_grey"] <= found["kind"].map(cuts)]
        scores = filament_detection(kept, truth)
        hits += scores["recall"] * scores["n_true"]
        n_true += scores["n_true"]
        right += scores["precision"] * scores["n_found"]
        n_found += scores["n_found"]
    recall, precision = hits / n_true, right / max(n_found, 1)
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return {"recall": recall, "precision": precision, "f1": f1}


def calibrate(runs) -> tuple[dict, float]:
    """The pair of cuts (connector, tether) of the best pooled F1, and that F1."""
    best, best_f1 = None, -1.0
    for connector in PATH_CUTS:
        for tether in PATH_CUTS:
            cuts = {"connector": float(connector), "tether": float(tether)}
            f1 = pooled_scores(runs, cuts)["f1"]
            if f1 > best_f1 + 1e-12:
                best, best_f1 = cuts, f1
    return best, best_f1


def at_recall(curve: pd.DataFrame, recall: float) -> str:
    """The best precision where recall is at least ``recall``."""
    ok = curve[curve["recall"] >= recall]
    return f"{ok['precision'].max():.3f}" if len(ok) else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    calibration = [found_and_truth(CALIBRATION[0], s) for s in CALIBRATION[1]]
    best, best_f1 = calibrate(calibration)
    at_best = pooled_scores(calibration, best)
    print(
        f"calibration ({len(calibration)} tomograms): best F1 {best_f1:.3f} at "
        f"max_path_grey = {best} (the default is {DEFAULT_MAX_PATH_GREY}): "
        f"recall {at_best['recall']:.3f}, precision {at_best['precision']:.3f}"
    )

    held = [found_and_truth(HELD_OUT[0], s) for s in HELD_OUT[1]]
    # tomograms differ: the spread of the scores over all of them, at the default cuts
    each = [pooled_scores([run], DEFAULT_MAX_PATH_GREY) for run in calibration + held]
    print(
        f"  per tomogram at the default cuts ({len(each)}, both sets): recall "
        f"{min(e['recall'] for e in each):.2f}–{max(e['recall'] for e in each):.2f}, precision "
        f"{min(e['precision'] for e in each):.2f}–{max(e['precision'] for e in each):.2f}"
    )
    tested = pooled_curve(held, "path_grey", PATH_CUTS)
    plain = pooled_curve(held, "threshold")
    print(f"held out ({len(held)} tomograms), pooled:")
    for name, cuts in (("default cuts", DEFAULT_MAX_PATH_GREY), ("calibrated cuts", best)):
        row = pooled_scores(held, cuts)
        print(
            f"  straight-path test, {name} {cuts}: recall {row['recall']:.3f}, "
            f"precision {row['precision']:.3f}, F1 {row['f1']:.3f}"
        )
    first = plain[plain["recall"] >= 0.8].iloc[0]
    print(
        f"  thresholding alone, stopped where recall first passes 0.8 ({first.name:+.1f} SD): "
        f"recall {first['recall']:.3f}, precision {first['precision']:.3f}, F1 {first['f1']:.3f}"
    )
    for name, curve in (("one cut for both kinds", tested), ("thresholding alone", plain)):
        print(
            f"  {name}: best precision at recall >= 0.8: {at_recall(curve, 0.8)}, "
            f"best F1 {curve['f1'].max():.3f}"
        )
    print("held out, one straight-path cut for both kinds:")
    print(tested.iloc[::4].round(3).to_string())
    print("held out, thresholding alone by its last threshold:")
    print(plain.iloc[::3].round(3).to_string())


if __name__ == "__main__":
    main()
