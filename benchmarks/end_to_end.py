"""End to end on a full-size tomogram: 261 × 1024 × 1024 voxels at 1.469 nm.

This is the size CryoVesNet's authors timed (about 27.5 minutes on an 8-core laptop CPU, about
200 s on a GPU). A seeded synthetic synapse of that size is generated once and cached in
``data/cache/`` (about 1 GiB). The segmentation then runs in a fresh process, from file to
files as ``analysis segment`` does, and reports

- the wall time of each stage: reading and resampling to the network's 2.2 nm, network and
  stitching (one figure: they interleave), resampling back and writing the probability map,
  post-processing, writing the outputs;
- the bare-network limit measured in the same process: the time of one forward pass of a
  batch of tiles times the number of batches needed to cover the resampled volume without
  overlap — what no tiling scheme can beat;
- the process's peak resident memory.

Run:  .venv/bin/python benchmarks/end_to_end.py [--shape 261 1024 1024] [--voxel-size-nm 1.469]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, resource, sys, tempfile, time
    from pathlib import Path
    import numpy as np, torch

    from analysis.inference import predict_file
    from analysis.inference.tiling import tile_grid
    from analysis.io import read_tomogram
    from analysis.model import inference_network, load_shipped_model
    from analysis.postprocess import segment_vesicles, write_outputs

    source, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    times = {}
    start = time.perf_counter()
    model = load_shipped_model()
    tomo = read_tomogram(source, mmap=True)
    times["load network, open tomogram"] = time.perf_counter() - start

    t = time.perf_counter()
    prob_path = outdir / f"{source.stem}_probability.mrc"
    predict_file(source, prob_path, model=model, progress=False)
    times["resample, network + stitching, resample back, write map"] = time.perf_counter() - t

    t = time.perf_counter()
    probability = np.asarray(read_tomogram(prob_path, mmap=True).data)
    data = np.asarray(tomo.data)
    vesicles = segment_vesicles(probability, data, tomo.voxel_size_nm)
    times["post-processing"] = time.perf_counter() - t

    t = time.perf_counter()
    write_outputs(vesicles, outdir, source.stem, tomo.voxel_size_nm)
    times["write labels, table, model, Pyto labels"] = time.perf_counter() - t
    total = time.perf_counter() - start

    # The bare-network limit: forward passes needed to cover the resampled volume once.
    net, meta = model
    fast = inference_network(net)
    work = tuple(round(n * tomo.voxel_size_nm / meta["voxel_size_nm"]) for n in tomo.shape)
    _, starts = tile_grid(work, 64, 0.0)
    n_tiles = int(np.prod([len(s) for s in starts]))
    x = torch.randn(2, 1, 64, 64, 64).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        fast(x)
        t = time.perf_counter()
        for _ in range(3):
            fast(x)
        per_batch = (time.perf_counter() - t) / 3
    print(json.dumps({
        "stages_s": times, "total_s": total, "kept": int(len(vesicles.kept)),
        "work_shape": work, "tiles_without_overlap": n_tiles,
        "bare_network_s": per_batch * np.ceil(n_tiles / 2),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    """
)


def make_tomogram(path: Path, shape, voxel_size_nm: float, seed: int = 11) -> None:
    """A seeded synthetic synapse of ``shape`` at ``voxel_size_nm`` (vesicle count to scale)."""
    import numpy as np

    from analysis.io import write_mrc
    from analysis.synthetic import make_synapse
    from analysis.synthetic.geometry import SynapseGeometry

    default = SynapseGeometry()
    volume = np.prod(shape) * voxel_size_nm**3
    scale = volume / (np.prod(default.shape) * default.voxel_size_nm**3)
    geometry = SynapseGeometry(
        shape=tuple(shape),
        voxel_size_nm=voxel_size_nm,
        n_vesicles=int(default.n_vesicles * scale),
        n_large_vesicles=int(round(default.n_large_vesicles * scale)),
    )
    synapse = make_synapse(geometry, seed=seed)
    write_mrc(path, synapse.tomogram, voxel_size_nm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(261, 1024, 1024))
    parser.add_argument("--voxel-size-nm", type=float, default=1.469)
    args = parser.parse_args()
    cache = ROOT / "data" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    source = cache / "e2e_{}x{}x{}_{:g}nm.mrc".format(*args.shape, args.voxel_size_nm)
    if not source.exists():
        start = time.perf_counter()
        make_tomogram(source, args.shape, args.voxel_size_nm)
        print(f"generated {source.name} in {time.perf_counter() - start:.0f} s")
    outdir = cache / "e2e_out"
    outdir.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(outdir)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"tomogram {tuple(args.shape)} at {args.voxel_size_nm} nm; network grid {report['work_shape']}"
    )
    for stage, seconds in report["stages_s"].items():
        print(f"  {stage:58s} {seconds:7.1f} s")
    print(f"  {'total':58s} {report['total_s']:7.1f} s  ({report['kept']} vesicles kept)")
    print(
        f"bare-network limit: {report['tiles_without_overlap']} tiles in batches of 2 = "
        f"{report['bare_network_s']:.1f} s"
    )
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
