"""What the domain check costs, against segmenting the same tomogram.

``analysis segment`` runs the domain check (:func:`analysis.inference.domain.check_tomogram`)
on every tomogram before it segments it. The check reads a central crop, a subsample and,
where the spectrum is matched (the default for the shipped network), nine crops to measure
the spectrum and a wider central crop to filter; its network runs four times over the crop
(flips). Timed on the held-out synthetic tomogram test_s301 (128 × 256 × 256 at 2.2 nm) with
the shipped network loaded once, alternating, three runs each, the median counting:

* ``segment``: the probability map and the post-processing, as the package runs them by
  default (spectrum matched);
* ``check``: the domain check as ``segment`` runs it (spectrum matched);
* ``check, unmatched``: the same with ``match_spectrum=False`` (the check as it was before the
  matching).

The ratios are the figures (these machines are noisy; a ratio within one run is not). Run (on
the cores the figures are about):

    .venv/bin/python benchmarks/check_speed.py
"""

from __future__ import annotations

import numpy as np
from alternating import alternating_medians, print_medians

from analysis.inference import predict
from analysis.inference.domain import check_tomogram
from analysis.io import read_tomogram
from analysis.models import Predictor
from analysis.postprocess import segment_vesicles
from analysis.synthetic import sample_dataset

REPEATS = 3


def main() -> None:
    files = sample_dataset(quick=False)["test"][0]
    tomo = read_tomogram(files["tomogram"])
    data, vs = np.asarray(tomo.data, np.float32), float(tomo.voxel_size_nm)
    predictor = Predictor.load()

    def segment():
        segment_vesicles(predict(data, vs, predictor), data, vs)

    runs = {
        "segment": segment,
        "check": lambda: check_tomogram(data, vs, predictor),
        "check, unmatched": lambda: check_tomogram(data, vs, predictor, match_spectrum=False),
    }
    median = alternating_medians(runs, REPEATS)
    print_medians(f"test_s301 {data.shape} at {vs} nm, median of {REPEATS} runs:", median)
    print(f"ratio check / segment: {median['check'] / median['segment']:.2f}")
    print(f"ratio check / check unmatched: {median['check'] / median['check, unmatched']:.2f}")


if __name__ == "__main__":
    main()
