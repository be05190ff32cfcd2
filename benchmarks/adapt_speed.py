"""Adaptation speed in one run: the teacher's statistics' cost, and the statistics-only saving.

What keeping the teacher's batch-norm statistics costs an adaptation, and what adapting the
statistics only saves, measured in the same run.

Baseline: :func:`analysis.adapt.adapt` with :func:`analysis.adapt.update_statistics` replaced
by a no-op — the steps of the first method version, whose teacher took the student's
statistics (copying buffers costs nothing measurable). Measured: the package's mean teacher, whose
teacher makes one more forward pass a step on the clean patches. Both adapt the shipped
network to the quick held-out tomogram (generator v3, seed 301, 48 × 96 × 96 at 2.2 nm) with
the default settings but one epoch of ``--steps`` steps, alternately (baseline, measured, ...)
``--repeats`` times, so that a slow minute of a shared machine weighs on both; the ratio of
the medians is printed. Seconds include the first whole-tomogram prediction, which both share.
A third variant in the same rotation, ``method="statistics"`` (batch-norm statistics only,
the same number of batches), is compared with the package's mean teacher; a fourth adds what
``analysis adapt`` does after adapting, the label-free comparison of the starting and the
adapted network on the tomogram (:func:`analysis.adaptation_report.compare_networks`: two
whole-tomogram predictions and post-processings), compared with the statistics alone. Its
share shrinks with more batches (``analysis adapt`` measures 6 × 50 by default; pass
``--steps 300`` for that).

Run:  .venv/bin/python benchmarks/adapt_speed.py   (about 4 minutes on one core)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from analysis import adapt as ad
from analysis.adaptation_report import compare_networks
from analysis.io import read_tomogram
from analysis.synthetic import example_files

#: The variants, run in this order in each repeat.
VARIANTS = ("baseline", "mean teacher", "statistics", "statistics, then compare")


def one_run(tomo, voxel_size_nm: float, steps: int, folder: Path, variant: str) -> float:
    """Seconds of one adaptation of one epoch of ``steps`` steps."""
    method = "statistics" if variant.startswith("statistics") else "mean-teacher"
    cfg = ad.AdaptConfig(epochs=1, steps_per_epoch=steps, method=method)
    out = folder / f"run_{variant}_{time.perf_counter_ns()}.pt"
    started = time.perf_counter()
    if variant == "baseline":
        with mock.patch.object(ad, "update_statistics", lambda teacher, clean: None):
            ad.adapt([tomo], [voxel_size_nm], out, config=cfg, progress=False)
    else:
        ad.adapt([tomo], [voxel_size_nm], out, config=cfg, progress=False)
    if variant.endswith("compare"):
        compare_networks([tomo], [voxel_size_nm], None, out)
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    tomogram = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    tomo = np.asarray(tomogram.data, np.float32)
    times = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for variant in VARIANTS:
                times[variant].append(
                    one_run(tomo, tomogram.voxel_size_nm, args.steps, Path(folder), variant)
                )
    median = {v: np.median(t) for v, t in times.items()}
    print(f"baseline (teacher takes the student's statistics): {np.round(times['baseline'], 1)} s")
    mt = np.round(times["mean teacher"], 1)
    print(f"mean teacher (teacher keeps statistics of clean patches): {mt} s")
    print(f"statistics only (no student, no backward pass): {np.round(times['statistics'], 1)} s")
    ratio = median["mean teacher"] / median["baseline"]
    print(f"ratio of medians, mean teacher / baseline: {ratio:.2f} ({args.steps} steps a run)")
    ratio = median["statistics"] / median["mean teacher"]
    print(f"ratio of medians, statistics only / mean teacher: {ratio:.2f}")
    compared = np.round(times["statistics, then compare"], 1)
    print(f"statistics, then the comparison of analysis adapt: {compared} s")
    ratio = median["statistics, then compare"] / median["statistics"]
    print(f"ratio of medians, statistics then comparison / statistics only: {ratio:.2f}")


if __name__ == "__main__":
    main()
