"""Speed of the synthetic-tomogram generator, against a named baseline in the same run.

Target (issue "synthetic"): a 128×256×256 tomogram in < 30 s on 2 CPU cores.
Baseline: scikit-image's ``radon`` / ``iradon`` (ramp filter) applied slice by slice to the same
(z, x) planes and tilt angles — the textbook way to simulate a tilt series and reconstruct it by
filtered back-projection. It is timed on ``BASELINE_ROWS`` y-rows and scaled to all rows (it
treats rows independently, so the cost is linear in their number).

Run:  .venv/bin/python benchmarks/synthetic_speed.py
"""

from __future__ import annotations

import time

import numpy as np
from skimage.transform import iradon, radon

from analysis.synthetic import SynapseGeometry, make_synapse
from analysis.synthetic.geometry import make_phantom
from analysis.synthetic.imaging import Microscope, project, reconstruct

BASELINE_ROWS = 8


def main() -> None:
    geometry = SynapseGeometry()
    mic = Microscope()
    t0 = time.perf_counter()
    make_synapse(geometry, mic, seed=1)
    total = time.perf_counter() - t0

    density = make_phantom(geometry, seed=1).density
    tilts = mic.tilts_deg
    t0 = time.perf_counter()
    reconstruct(project(density, tilts), tilts, density.shape[0])
    ours = time.perf_counter() - t0

    nz, ny, nx = density.shape
    rows = np.linspace(0, ny - 1, BASELINE_ROWS).astype(int)
    t0 = time.perf_counter()
    for y in rows:
        plane = np.zeros((nx, nx), np.float32)  # radon wants a square image
        top = (nx - nz) // 2
        plane[top : top + nz] = density[:, y, :]
        sino = radon(plane, theta=tilts + 90.0, circle=False)
        iradon(sino, theta=tilts + 90.0, filter_name="ramp", circle=False, output_size=nx)
    baseline = (time.perf_counter() - t0) * ny / BASELINE_ROWS

    print(f"shape (z, y, x)                     {geometry.shape}, {len(tilts)} tilts")
    print(f"make_synapse end to end             {total:6.1f} s   (target < 30 s)")
    print(f"projection + WBP, ours              {ours:6.1f} s")
    print(f"projection + FBP, skimage (scaled)  {baseline:6.1f} s")
    print(f"speed-up over the baseline          {baseline / ours:6.1f} x")


if __name__ == "__main__":
    main()
