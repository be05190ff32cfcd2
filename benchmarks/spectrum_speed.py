"""What matching the amplitude spectrum costs at inference, against inference without it.

``predict(…, match_spectrum=True)`` measures the spectrum over a grid of nine crops, fits the
filter and applies it (identity plus eight Gaussians made in a cascade, the whole volume in
one slab here) before the network runs. Both are timed on the held-out synthetic tomogram test_s301 (128 × 256 × 256 at
2.2 nm) with the shipped network and default tiles, alternating, three runs each; the median
counts. The filter alone (:func:`analysis.inference.spectrum.match_spectrum`) is timed in the
same runs. Run (on the cores the figures are about):

    .venv/bin/python benchmarks/spectrum_speed.py
"""

from __future__ import annotations

import time

import numpy as np

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
    times: dict[str, list[float]] = {"plain": [], "matched": [], "filter alone": []}
    for _ in range(REPEATS):
        for name in ("plain", "matched", "filter alone"):
            start = time.perf_counter()
            if name == "filter alone":
                spectrum.match_spectrum(
                    tomo.data, tomo.voxel_size_nm, envelope, centre=centre, scale=scale
                )
            else:
                predict(tomo.data, tomo.voxel_size_nm, predictor, match_spectrum=name == "matched")
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    print(f"test_s301 {tomo.shape} at {tomo.voxel_size_nm} nm, median of {REPEATS} runs:")
    for name, seconds in median.items():
        print(f"  {name:13s} {seconds:7.1f} s")
    print(f"ratio matched / plain: {median['matched'] / median['plain']:.2f}")


if __name__ == "__main__":
    main()
