"""End to end on a full-size tomogram: 261 × 1024 × 1024 voxels at 1.469 nm.

This is the size CryoVesNet's authors timed: about 27.5 minutes on a MacBook Pro M1 without its
GPU, about 200 s on one A4000-class GPU (the CryoVesNet repository's README, section "Runtime
efficiency of the pipeline"; book/references.bib: cryovesnet_readme). A seeded synthetic synapse of that size is generated once and cached in
``data/cache/`` (about 1 GiB). The segmentation then runs in a fresh process, from file to
files as ``analysis segment`` does, and reports

- the wall time of each stage: resampling to the network's 2.2 nm and back, matching the
  amplitude spectrum to the training data's (measuring it, fitting and applying the filter;
  the package's default, ``--no-match-spectrum`` to leave it out), network and stitching (they interleave, tile by tile: the forward passes are timed apart), normalising
  and writing the probability map, post-processing, writing the outputs;
- the bare-network limit measured in the same process and precision: the network alone
  (forward passes with normalising and sigmoid, no stitching) over all the tiles that cover
  the resampled volume without overlap — with the run's tile, and with 64³ tiles, the
  fastest per voxel on a CPU — each a whole pass, taken before and after the run and
  averaged; and the 64³ time per voxel times the volume's voxels (no padding), a floor no
  tiling can beat;
- the process's peak resident memory (VmHWM), and sampled peaks of its anonymous and
  file-backed parts (memory-mapped files count towards the latter until released).

Run:  .venv/bin/python benchmarks/end_to_end.py [--shape 261 1024 1024] [--voxel-size-nm 1.469]
          [--no-match-spectrum]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    import numpy as np

    import importlib
    predict_module = importlib.import_module("analysis.inference.predict")  # the function shadows it
    from analysis.inference import plan_tiles, predict_file, tile_function
    from analysis.inference.tiling import tile_grid
    from analysis.io import read_tomogram
    from analysis.models import Predictor
    from analysis.postprocess import segment_vesicles, write_outputs

    source, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    match_spectrum = {"auto": "auto", "off": False}[sys.argv[3]]
    peaks = {"RssAnon": 0, "RssFile": 0, "RssShmem": 0}

    def sample_memory():  # the kernel keeps only the peak of the total (VmHWM)
        while True:
            for line in open("/proc/self/status"):
                key, _, value = line.partition(":")
                if key in peaks:
                    peaks[key] = max(peaks[key], int(value.split()[0]) // 1024)
            time.sleep(0.1)

    threading.Thread(target=sample_memory, daemon=True).start()
    clock = {"rescale": 0.0, "spectrum": 0.0, "network + stitching": 0.0, "network": 0.0}

    def timed(name, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock[name] += time.perf_counter() - t
        return run

    predict_module.rescale = timed("rescale", predict_module.rescale)
    spectrum = predict_module.spectrum
    spectrum.matching_filter = timed("spectrum", spectrum.matching_filter)
    spectrum.apply_gain_filter = timed("spectrum", spectrum.apply_gain_filter)
    predict_module.sliding_window = timed("network + stitching", predict_module.sliding_window)

    class TimedPredictor(Predictor):  # the predictor, its forward passes timed
        def __call__(self, tiles, **options):
            return timed("network", super().__call__)(tiles, **options)

    # Bare-network limits in the same process and precision: the network alone (normalising,
    # forward pass, sigmoid) over every tile that covers the resampled volume without overlap,
    # with the run's tile and with 64³ tiles (the fastest per voxel). Each is a whole pass, not
    # one tile scaled up, and is taken before and after the run above and averaged, so that
    # the machine's slow minutes weigh on both sides alike.
    from analysis.inference.heap import reuse_freed_memory
    from analysis.inference.rescale import rescale, rescaled_shape
    from analysis.io.memmap import work_array
    from analysis.normalise import centre_and_scale

    # The shipped network as segment prepares it, and the tiling predict plans for this volume.
    predictor = TimedPredictor.load(device="cpu")
    dtype, meta = predictor.dtype, predictor.checkpoint
    header = read_tomogram(source, mmap=True)  # only its shape and voxel size are used
    work = rescaled_shape(header.shape, header.voxel_size_nm / meta["voxel_size_nm"])
    tile, overlap = plan_tiles(work)

    def bare_network():
        # Mapped and resampled anew each time: nothing of it stays resident through the run,
        # whose peak memory is measured.
        volume = work_array(work, memory_limit_bytes=512 * 1024**2)
        rescale(read_tomogram(source, mmap=True).data, work, out=volume)
        centre, scale = centre_and_scale(volume, meta["normalisation"])
        fn = tile_function(predictor, centre, scale)

        def network_pass(shape, batch):
            shape, starts = tile_grid(work, shape, 0.0)
            corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
            seconds = 0.0
            for i in range(0, len(corners), batch):
                cubes = np.stack([
                    np.asarray(volume[z : z + shape[0], y : y + shape[1], x : x + shape[2]])
                    for z, y, x in corners[i : i + batch]
                ])
                t = time.perf_counter()
                fn(cubes)
                seconds += time.perf_counter() - t
            return seconds, len(corners)

        with reuse_freed_memory():  # as predict runs it
            return {"run tile": network_pass(tile, 1), "64³": network_pass((64, 64, 64), 2)}

    def peak_rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    limits = [bare_network()]
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS is the run's, not the limit's
    peaks.update(dict.fromkeys(peaks, 0))
    clock["network"] = 0.0  # the limit's passes above went through the same tile predictor
    time.sleep(0.2)

    times = {}
    start = time.perf_counter()
    model = TimedPredictor.load(device="cpu")
    tomo = read_tomogram(source, mmap=True)
    times["load network, open tomogram"] = time.perf_counter() - start

    t = time.perf_counter()
    prob_path = outdir / f"{source.stem}_probability.mrc"
    predict_file(source, prob_path, model, progress=False, match_spectrum=match_spectrum)
    network_stage = time.perf_counter() - t
    times["resample in and back (2 passes)"] = clock["rescale"]
    times["match the spectrum (measure, fit, filter)"] = clock["spectrum"]
    times["network + stitching"] = clock["network + stitching"]
    times["  of which the network (forward passes)"] = clock["network"]
    times["  of which stitching (read tiles, blend, normalise)"] = (
        clock["network + stitching"] - clock["network"]
    )
    times["normalise, clip, write the map"] = (
        network_stage - clock["rescale"] - clock["spectrum"] - clock["network + stitching"]
    )

    t = time.perf_counter()
    probability = read_tomogram(prob_path, mmap=True).data
    vesicles = segment_vesicles(probability, tomo.data, tomo.voxel_size_nm)
    times["post-processing"] = time.perf_counter() - t

    t = time.perf_counter()
    write_outputs(vesicles, outdir, source.stem, tomo.voxel_size_nm)
    times["write labels, table, model, Pyto labels"] = time.perf_counter() - t
    total = time.perf_counter() - start
    peak_rss, peaks = peak_rss_mib(), dict(peaks)

    limits.append(bare_network())
    tiles_run = int(np.prod([len(s) for s in tile_grid(work, tile, overlap)[1]]))
    print(json.dumps({
        "stages_s": times, "total_s": total, "kept": int(len(vesicles.kept)),
        "work_shape": work, "tile": tile, "tiles": tiles_run, "dtype": str(dtype),
        "limits": limits,
        "peak_rss_mib": peak_rss,
        "peaks_mib": peaks,
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
    parser.add_argument(
        "--no-match-spectrum",
        action="store_true",
        help="leave out the spectrum matching (on by default for the shipped network, as in "
        "the package)",
    )
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
        [
            sys.executable,
            "-c",
            CHILD,
            str(source),
            str(outdir),
            "off" if args.no_match_spectrum else "auto",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"the segmentation failed:\n{result.stderr}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(
        f"tomogram {tuple(args.shape)} at {args.voxel_size_nm} nm; network grid "
        f"{report['work_shape']}, {report['tiles']} tiles of {report['tile']} in {report['dtype']}"
    )
    for stage, seconds in report["stages_s"].items():
        print(f"  {stage:58s} {seconds:7.1f} s")
    stages = sum(v for k, v in report["stages_s"].items() if not k.startswith("  "))
    print(f"  {'total':58s} {report['total_s']:7.1f} s  ({report['kept']} vesicles kept)")
    assert abs(stages - report["total_s"]) < 1.0, "the stages do not add up to the total"
    network = report["stages_s"]["network + stitching"]
    before, after = report["limits"]
    voxels = np.prod(report["work_shape"])
    for key, name in (("run tile", "the run's tile"), ("64³", "64³ tiles")):
        (s0, tiles), (s1, _) = before[key], after[key]
        limit = (s0 + s1) / 2
        print(
            f"bare-network limit, {name}, {tiles} tiles without overlap: {limit:5.1f} s "
            f"(before {s0:.1f} s, after {s1:.1f} s); network / limit {network / limit:.2f}"
        )
    per_voxel = (before["64³"][0] + after["64³"][0]) / 2 / (before["64³"][1] * 64**3)
    print(
        f"per-voxel floor (64³ speed × the {voxels / 1e6:.1f} M voxels, no padding): "
        f"{per_voxel * voxels:5.1f} s; network / floor {network / (per_voxel * voxels):.2f}"
    )
    peaks = ", ".join(f"{k} {v} MiB" for k, v in report["peaks_mib"].items())
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB (sampled peaks: {peaks})")


if __name__ == "__main__":
    main()
