"""Timing variants of one task in turn, for ratios measured in the same run.

These machines are noisy: a variant timed alone, minutes after another, is compared with a
different machine. Each repeat runs every variant once, in the same order, and the median of
each variant's repeats counts (:func:`alternating_medians`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def alternating_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each of ``runs`` (name → callable), run in turn ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def print_medians(title: str, median: dict[str, float]) -> None:
    """``title``, then one line of seconds per variant."""
    print(title)
    width = max(map(len, median))
    for name, seconds in median.items():
        print(f"  {name:{width}s} {seconds:7.1f} s")
