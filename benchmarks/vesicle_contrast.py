"""How conspicuous are the vesicles? Vesicle contrast of training and benchmark tomograms.

A vesicle's membrane is darker than the cytoplasm around it. Its contrast
(:func:`analysis.evaluate.vesicle_contrast`) is the mean grey value of a shell 3–6 voxels
outside the true vesicles minus that of the outermost 1.5 voxels inside them, in standard
deviations of the whole tomogram, away from the z faces (membranes dark: larger is more
conspicuous). It is measured with the exact truth, at each tomogram's own voxel size, on

* the varied training tomograms (:func:`analysis.synthetic.variety.varied_dataset`, the
  version in the code), and
* the cross-domain rows of both simulators (:mod:`cross_domain`'s cached tomograms), beside
  the shipped network's F1 on the row from the shipped table,

to see whether the rows a network fails on hold vesicles fainter than any it was trained on.
Run:

    .venv/bin/python benchmarks/vesicle_contrast.py            # 96 training tomograms
    .venv/bin/python benchmarks/vesicle_contrast.py --varied 0 # the rows only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cross_domain as cd
import mrcfile
import numpy as np
import pandas as pd

from analysis.evaluate import cross_domain_scores, vesicle_contrast
from analysis.synthetic.variety import VARIED_VERSION, varied_dataset


def training_contrast(n: int) -> pd.DataFrame:
    """Contrast of the first ``n`` varied training tomograms."""
    rows = []
    for files in varied_dataset("train", n):
        tomogram = mrcfile.read(files["tomogram"])
        labels = mrcfile.read(files["labels"])
        rows.append(
            {
                "tomogram": Path(files["tomogram"]).stem,
                "contrast": vesicle_contrast(tomogram, labels),
            }
        )
    return pd.DataFrame(rows)


def row_contrast(cache: Path) -> pd.DataFrame:
    """Contrast of every cross-domain row (mean over its seeds) and the shipped network's F1."""
    table = cross_domain_scores()
    shipped = table[table.network == "shipped"].set_index(["simulator", "row"])["f1"]
    rows = []
    for sim, names in cd.ROWS.items():
        for row in names:
            values = []
            for seed in cd.SEEDS[sim]:
                tomogram, labels, _ = cd.tomogram(sim, row, seed, False, cache)
                values.append(vesicle_contrast(tomogram, labels))
            rows.append(
                {
                    "simulator": sim,
                    "row": row,
                    "contrast": float(np.mean(values)),
                    "f1_shipped": shipped.get((sim, row), np.nan),
                }
            )
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--varied", type=int, default=96, help="training tomograms to measure")
    parser.add_argument("--cache", type=Path, default=cd.ROOT / "benchmarks/results/cross_domain")
    parser.add_argument(
        "--out", type=Path, default=cd.ROOT / "benchmarks/results/vesicle_contrast.csv"
    )
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    parts = []
    if args.varied:
        train = training_contrast(args.varied)
        q = np.percentile(train["contrast"], [0, 5, 25, 50, 75, 100])
        print(
            f"varied v{VARIED_VERSION} training tomograms ({len(train)}): contrast min "
            f"{q[0]:.2f}, 5 % {q[1]:.2f}, quartiles {q[2]:.2f} / {q[3]:.2f} / {q[4]:.2f}, "
            f"max {q[5]:.2f}; "
            f"below 0.35: {(train['contrast'] < 0.35).sum()}"
        )
        parts.append(
            train.assign(simulator=f"varied v{VARIED_VERSION} training", row=train.pop("tomogram"))
        )
    rows = row_contrast(args.cache)
    print(rows.sort_values("contrast").round(3).to_string(index=False))
    parts.append(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_csv(args.out, index=False)
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
