"""What matching the amplitude spectrum costs at inference, against inference without it.

``predict(…, match_spectrum=True)`` measures the spectrum over a grid of nine crops, fits the
filter and applies it (identity plus eight Gaussians made in a cascade, the whole volume in
one slab here) before the network runs. Both are timed on the held-out synthetic tomogram
test_s301 (128 × 256 × 256 at 2.2 nm) with the shipped network and default tiles,
alternating, three runs each; the median counts. The filter alone
(:func:`analysis.inference.spectrum.apply_gain_filter` with the tomogram's weights) is timed in
the same runs, its Gaussians shared among torch's threads as ``predict`` shares them, and on
one thread (SciPy's own ``gaussian_filter``, as before the filter was threaded). Run (on the
cores the figures are about):

    .venv/bin/python benchmarks/spectrum_speed.py
"""

from __future__ import annotations

import torch
from alternating import alternating_medians, print_medians

from analysis.inference import predict, spectrum
from analysis.io import read_tomogram
from analysis.models import Predictor
from analysis.normalise import DEFAULT_NORMALISATION, centre_and_scale
from analysis.synthetic import sample_dataset

REPEATS = 3


def main() -> None:
    files = sample_dataset(quick=False)["test"][0]
    tomo = read_tomogram(files["tomogram"])
    predictor = Predictor.load()
    meta = predictor.checkpoint
    envelope = spectrum.reference_envelope(meta)
    centre, scale = centre_and_scale(tomo.data, meta["normalisation"] or DEFAULT_NORMALISATION)
    data, vs = tomo.data, tomo.voxel_size_nm
    weights, _ = spectrum.matching_filter(data, vs, envelope, centre=centre, scale=scale)
    threads = torch.get_num_threads()  # as predict shares the filter's Gaussians
    runs = {
        "plain": lambda: predict(data, vs, predictor, match_spectrum=False),
        "matched": lambda: predict(data, vs, predictor, match_spectrum=True),
        "filter alone": lambda: spectrum.apply_gain_filter(data, weights, threads=threads),
        "filter, one thread": lambda: spectrum.apply_gain_filter(data, weights),
    }
    median = alternating_medians(runs, REPEATS)
    print_medians(f"test_s301 {tomo.shape} at {vs} nm, median of {REPEATS} runs:", median)
    print(f"ratio matched / plain: {median['matched'] / median['plain']:.2f}")
    print(
        f"ratio filter on {threads} threads / one thread: "
        f"{median['filter alone'] / median['filter, one thread']:.2f}"
    )


if __name__ == "__main__":
    main()
