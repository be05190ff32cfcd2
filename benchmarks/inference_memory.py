"""Peak memory of whole-tomogram inference on a 1 GiB float32 tomogram.

A 256 × 1024 × 1024 float32 MRC (1 GiB) is written to a temporary folder and segmented from
file to file (``analysis.inference.predict_file``: memory-mapped input, memory-mapped MRC
output) by the shipped network in a fresh Python process. The figure is that process's peak
resident memory (``ru_maxrss``) divided by the tomogram's size; the baseline is the same
process's memory after importing torch and loading the network, before predicting. Tiles do
not overlap here (overlap only adds compute, not memory) to keep the run to a few minutes.

Run:  .venv/bin/python benchmarks/inference_memory.py [--shape 256 1024 1024]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

CHILD = textwrap.dedent(
    """
    import sys, warnings
    from analysis.inference import predict_file
    from analysis.models import Predictor

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024

    model = Predictor.load()
    print(f"baseline {rss_mib():.0f}")
    warnings.simplefilter("ignore")  # random data hold no vesicles
    predict_file(sys.argv[1], sys.argv[2], model, tile=64, overlap=0.0, match_spectrum=False)
    """
)


def main() -> None:
    from analysis.io import open_mrc_output

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 1024, 1024))
    shape = tuple(parser.parse_args().shape)
    with tempfile.TemporaryDirectory() as tmp:
        tomogram = Path(tmp) / "big.mrc"
        rng = np.random.default_rng(0)
        with open_mrc_output(tomogram, shape, 2.2) as data:
            for k in range(0, shape[0], 8):
                data[k : k + 8] = rng.normal(size=(min(8, shape[0] - k), *shape[1:]))
        size_mib = np.prod(shape) * 4 / 2**20
        t0 = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(tomogram), str(Path(tmp) / "prob.mrc")],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        baseline = float(child.stdout.split()[-1])
    print(f"tomogram {shape} float32: {size_mib:.0f} MiB; prediction took {seconds:.0f} s")
    print(f"baseline (python + torch + network) : {baseline:6.0f} MiB")
    print(f"peak resident memory                : {peak_mib:6.0f} MiB")
    print(f"peak / tomogram size                : {peak_mib / size_mib:6.2f}")


if __name__ == "__main__":
    main()
