"""Speed and accuracy of the inference settings, against the old defaults in the same run.

Baseline: 64³ tiles overlapping by 0.25, float32 (the defaults before planned tiles and
bfloat16). Each setting predicts the three held-out synthetic tomograms (128 × 256 × 256 at
2.2 nm) with the shipped network; the table gives the time, the speed-up over the baseline,
the mask Dice (probability > 0.5) against the exact truth per tomogram, and how far the map
is from the baseline's. Settings run in turn, twice; the faster run counts.

Run:  .venv/bin/python benchmarks/inference_settings.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from analysis.evaluate import dice_score
from analysis.inference import predict
from analysis.io import read_tomogram
from analysis.models import Predictor
from analysis.synthetic import sample_dataset

#: Setting → (the network's precision, tiling options of predict).
SETTINGS = {
    "baseline: 64³, overlap 0.25, float32": ("float32", dict(tile=64, overlap=0.25)),
    "64³, overlap 0.25, bfloat16": ("bfloat16", dict(tile=64, overlap=0.25)),
    "planned tiles, float32": ("float32", {}),
    "planned tiles, bfloat16": ("bfloat16", {}),
    "default (planned, auto precision)": ("auto", {}),
}


def main() -> None:
    predictors = {
        precision: Predictor.load(precision=precision) for precision, _ in SETTINGS.values()
    }
    data = [
        (read_tomogram(f["tomogram"]), read_tomogram(f["labels"]).data > 0)
        for f in sample_dataset()["test"]
    ]
    best = dict.fromkeys(SETTINGS, np.inf)
    maps = {}
    for _ in range(2):
        for name, (precision, options) in SETTINGS.items():
            model = predictors[precision]
            start = time.perf_counter()
            maps[name] = [
                predict(t.data, t.voxel_size_nm, model, match_spectrum=False, **options)
                for t, _ in data
            ]
            best[name] = min(best[name], time.perf_counter() - start)
    baseline = next(iter(SETTINGS))
    rows = []
    for name in SETTINGS:
        dice = [dice_score(p > 0.5, truth) for p, (_, truth) in zip(maps[name], data, strict=True)]
        diff = [np.abs(p - q).mean() for p, q in zip(maps[name], maps[baseline], strict=True)]
        rows.append(
            {
                "setting": name,
                "seconds": round(best[name], 1),
                "speed-up": round(best[baseline] / best[name], 2),
                "mask Dice per tomogram": " ".join(f"{d:.4f}" for d in dice),
                "mean Dice": round(float(np.mean(dice)), 4),
                "mean |Δp| vs baseline": f"{np.mean(diff):.1e}",
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
