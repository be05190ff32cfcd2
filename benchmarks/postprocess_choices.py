"""The figures behind chapter 4's choices, measured with the shipped network.

On the three held-out synthetic tomograms (generator v3, seeds 301–303, 128 × 256 × 256 at
2.2 nm, 160 vesicles each, exact truth), from the shipped network's probability map:

* **splitting** — for thresholds 0.5 and 0.3 and each split method (none, watershed, CryoVesNet's
  adaptive threshold): the labels that merge two or more true vesicles, the true vesicles split
  by two or more labels, and the detection F1 after the remaining steps;
* **outlier limits** — the defaults against stricter ones (Mahalanobis 4.0, profile correlation
  0.5): vesicles found, true ones matched, precision and recall;
* **mask against spheres** — the Dice of the mask p > 0.5 and of the final labels.

Run (about a minute on one core; ``--network CKPT`` for another network; each tomogram's
amplitude spectrum is matched to the network's training data first where its varied training
spectra are known, as the package does: ``--match-spectrum on`` always, ``off`` never):

    .venv/bin/python benchmarks/postprocess_choices.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.evaluate import dice_score, evaluate_segmentation, merges_and_splits
from analysis.inference import predict
from analysis.io import read_tomogram
from analysis.models import Predictor
from analysis.postprocess import segment_vesicles
from analysis.synthetic import sample_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cross_domain as cd  # noqa: E402

#: Stricter outlier limits than the defaults (Mahalanobis 5.1, profile correlation 0).
STRICT = dict(max_mahalanobis=4.0, min_profile_correlation=0.5)


def scores_of(result, truth, voxel_size_nm) -> dict:
    s = evaluate_segmentation(result.labels, truth, voxel_size_nm, pred_table=result.kept)
    return {k: s[k] for k in ("n_pred", "n_matched", "precision", "recall", "f1", "dice")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", help="a checkpoint instead of the shipped network")
    cd.add_match_spectrum_option(parser, "predict(match_spectrum=): auto (default), on or off")
    args = parser.parse_args(argv)
    setting = cd.MATCH_SETTINGS[args.match_spectrum]
    model = Predictor.load(args.network)
    splits, outliers = [], []
    for files in sample_dataset()["test"]:
        tomo = read_tomogram(files["tomogram"])
        truth = read_tomogram(files["labels"]).data
        vs = tomo.voxel_size_nm
        probability = predict(tomo.data, vs, model, match_spectrum=setting)
        name = files["tomogram"].stem
        by_choice = {}
        for threshold in (0.5, 0.3):
            for method in ("none", "watershed", "threshold"):
                result = by_choice[threshold, method] = segment_vesicles(
                    probability, tomo.data, vs, threshold=threshold, split=method
                )
                splits.append(
                    {
                        "tomogram": name,
                        "threshold": threshold,
                        "method": method,
                        # the candidates as split, before the sphere fits and outlier limits
                        **merges_and_splits(result.mask_labels, truth),
                        "f1": scores_of(result, truth, vs)["f1"],
                    }
                )
        strict = segment_vesicles(probability, tomo.data, vs, **STRICT)
        # the defaults are threshold 0.5 and the watershed, segmented above
        for limits_name, result in (("defaults", by_choice[0.5, "watershed"]), ("strict", strict)):
            outliers.append(
                {
                    "tomogram": name,
                    "limits": limits_name,
                    **scores_of(result, truth, vs),
                    "mask_dice": dice_score(probability > 0.5, truth),
                }
            )
        print(name, flush=True)
    pd.set_option("display.width", 160)
    print("\nsplitting (merged: labels covering >= 2 true vesicles; split: true ones cut)")
    print(pd.DataFrame(splits).round(3).to_string(index=False))
    print("\noutlier limits, and the mask's Dice beside the final labels'")
    print(pd.DataFrame(outliers).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
