"""What keeping the teacher's batch-norm statistics costs an adaptation, in the same run.

Baseline: :func:`analysis.adapt.adapt` with :func:`analysis.adapt.update_statistics` replaced
by a no-op — the steps of the first method version, whose teacher took the student's
statistics (copying buffers costs nothing measurable). Measured: the package's adapt, whose
teacher makes one more forward pass a step on the clean patches. Both adapt the shipped
network to the quick held-out tomogram (generator v3, seed 301, 48 × 96 × 96 at 2.2 nm) with
the default settings but one epoch of ``--steps`` steps, alternately (baseline, measured, ...)
``--repeats`` times, so that a slow minute of a shared machine weighs on both; the ratio of
the medians is printed. Seconds include the first whole-tomogram prediction, which both share.

Run:  .venv/bin/python benchmarks/adapt_speed.py   (about 3 minutes on one core)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from analysis import adapt as ad
from analysis.io import read_tomogram
from analysis.synthetic import example_files


def one_run(tomo, voxel_size_nm: float, steps: int, folder: Path, keep_statistics: bool) -> float:
    """Seconds of one adaptation of one epoch of ``steps`` steps."""
    cfg = ad.AdaptConfig(epochs=1, steps_per_epoch=steps)
    out = folder / f"run_{keep_statistics}_{time.perf_counter_ns()}.pt"
    started = time.perf_counter()
    if keep_statistics:
        ad.adapt([tomo], [voxel_size_nm], out, config=cfg, progress=False)
    else:
        with mock.patch.object(ad, "update_statistics", lambda teacher, clean: None):
            ad.adapt([tomo], [voxel_size_nm], out, config=cfg, progress=False)
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    tomogram = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    tomo = np.asarray(tomogram.data, np.float32)
    times = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for keep in (False, True):
                times[keep].append(
                    one_run(tomo, tomogram.voxel_size_nm, args.steps, Path(folder), keep)
                )
    base, new = np.median(times[False]), np.median(times[True])
    print(f"baseline (teacher takes the student's statistics): {np.round(times[False], 1)} s")
    print(f"package (teacher keeps statistics of clean patches): {np.round(times[True], 1)} s")
    print(f"ratio of medians, package / baseline: {new / base:.2f} ({args.steps} steps a run)")


if __name__ == "__main__":
    main()
