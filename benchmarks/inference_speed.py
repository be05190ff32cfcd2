"""Whole-tomogram inference speed against MONAI's sliding_window_inference, same run.

Both stitch the shipped network over the held-out synthetic tomogram test_s301
(128 × 256 × 256 at 2.2 nm) with the same tile (64³), overlap (0.25), tiles per forward pass
(2) and Gaussian blending window (ours, handed to MONAI as ``roi_weight_map``). MONAI gets
the already normalised tomogram as a tensor (its normalisation is not timed); ours starts
from the raw tomogram. Each is run three times, alternating; the fastest run counts.

MONAI runs twice: with the network as a user would pass it (the baseline), and with the
network as ``predict`` prepares it (``analysis.models.inference_network``: BatchNorm folded
into the convolutions, channels-last weights), which isolates the stitching itself.

Overhead: our wall time ÷ (number of forward passes × median time of one bare forward pass of
the prepared network on a tile batch, measured in the same run).

MONAI is not a dependency of the package. Install it for this benchmark only, without
letting it pull another torch:

    .venv/bin/pip install --no-deps monai==1.6.1
    .venv/bin/python benchmarks/inference_speed.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from analysis.inference import blend_window, predict, tile_grid
from analysis.io import read_tomogram
from analysis.models import Predictor, inference_network, load
from analysis.normalise import normalise
from analysis.synthetic import sample_dataset

TILE, OVERLAP, BATCH, MODE = 64, 0.25, 2, "gaussian"


def main() -> None:
    try:
        from monai.inferers import sliding_window_inference
    except ImportError as err:
        raise SystemExit(
            "install MONAI first: .venv/bin/pip install --no-deps monai==1.6.1"
        ) from err

    files = sample_dataset(quick=False)["test"][0]
    tomo = read_tomogram(files["tomogram"])
    net, meta = load()
    normalised = torch.from_numpy(normalise(tomo.data, meta["normalisation"]))[None, None]
    window = torch.from_numpy(blend_window((TILE,) * 3, MODE))

    fast = inference_network(net)

    @torch.inference_mode()
    def monai(network):
        return sliding_window_inference(
            normalised,
            TILE,
            BATCH,
            lambda x: torch.sigmoid(network(x)),
            overlap=OVERLAP,
            mode=MODE,
            roi_weight_map=window,
        )[0, 0].numpy()

    def ours_run():
        return predict(
            tomo.data,
            tomo.voxel_size_nm,
            Predictor(net, meta),  # prepared in each run, as a call of predict did before
            tile=TILE,
            overlap=OVERLAP,
            batch_size=BATCH,
            blend=MODE,
            match_spectrum=False,  # like for like: MONAI's window sees the tomogram as it is
        )

    @torch.inference_mode()
    def bare_batch():
        x = torch.randn(BATCH, 1, TILE, TILE, TILE).contiguous(memory_format=torch.channels_last_3d)
        t0 = time.perf_counter()
        fast(x)
        return time.perf_counter() - t0

    bare_batch()  # warm-up
    runs = {
        "MONAI, network as given": lambda: monai(net),
        "MONAI, prepared network": lambda: monai(fast),
        "ours (analysis.inference.predict)": ours_run,
    }
    times = {name: [] for name in runs}
    outputs = {}
    for _ in range(3):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    bare = float(np.median([bare_batch() for _ in range(7)]))

    _, starts = tile_grid(tomo.shape, TILE, OVERLAP)
    n_tiles = int(np.prod([len(s) for s in starts]))
    n_passes = -(-n_tiles // BATCH)
    best = {name: min(t) for name, t in times.items()}
    ours = best["ours (analysis.inference.predict)"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; volume {tomo.shape}")
    print(f"tiles {n_tiles} ({TILE}^3, overlap {OVERLAP}), {n_passes} forward passes of {BATCH}")
    for name, seconds in best.items():
        diff = float(np.abs(outputs[name] - outputs["MONAI, network as given"]).max())
        print(
            f"{name:36s}: {seconds:6.2f} s  runs {np.round(times[name], 2)}  "
            f"speed-up of ours {seconds / ours:4.2f}x  max|diff| vs baseline {diff:.1e}"
        )
    print(f"bare forward pass of a batch        : {bare:6.3f} s -> limit {bare * n_passes:.2f} s")
    print(f"overhead (wall / bare limit)        : {ours / (bare * n_passes):6.3f}")


if __name__ == "__main__":
    main()
