"""Training throughput on the CPU (patches per second), against a named baseline in the same run.

Baseline: the reference tool's network configuration (CryoVesNet: depth 2, 16/32/64 filters,
32³ patches), trained by the same loop. Ours: the default UNetConfig (depth 3, 16 base
channels) on 48³ patches. Both are timed on the same synthetic data, after one warm-up step;
patches/s counts training patches through forward, loss, backward and optimiser step, and
"data" is the share of time spent sampling and augmenting patches.

Run:  .venv/bin/python benchmarks/training_throughput.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from analysis.models import UNet3D, UNetConfig
from analysis.synthetic import sample_dataset
from analysis.train import TrainConfig, dice_bce_loss, make_batch, volume_from_files

STEPS = 8


def throughput(net_config: UNetConfig, patch: int, volumes) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = UNet3D(net_config)
    optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
    cfg = TrainConfig(batch_size=4, patch_size=patch)
    rng = np.random.default_rng(0)
    data_time = 0.0
    for step in range(STEPS + 1):
        if step == 1:  # the first step pays for allocation; leave it out
            start, data_time = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        image, target, valid = make_batch(volumes, cfg, rng)
        data_time += time.perf_counter() - t0
        loss = dice_bce_loss(model(image), target, valid)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    seconds = time.perf_counter() - start
    voxels_per_s = STEPS * cfg.batch_size * patch**3 / seconds
    return STEPS * cfg.batch_size / seconds, voxels_per_s, data_time / seconds


def main() -> None:
    data = sample_dataset(quick=True)
    volumes = [volume_from_files(f["tomogram"], f["labels"])[0] for f in data["train"]]
    runs = {
        "baseline: CryoVesNet config (depth 2, 16/32/64), 32^3": (
            UNetConfig(depth=2, base_channels=16, dropout=0.2),
            32,
        ),
        "ours: depth 3, 16 base channels, 48^3": (UNetConfig(), 48),
    }
    results = {name: throughput(cfg, patch, volumes) for name, (cfg, patch) in runs.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (pps, vps, data_share) in results.items():
        print(f"{name:58s} {pps:6.2f} patches/s  {vps / 1e6:5.2f} Mvoxel/s  data {data_share:4.0%}")
    (b_pps, b_vps, _), (o_pps, o_vps, _) = results.values()
    print(f"ours / baseline: {o_pps / b_pps:.2f}x patches/s, {o_vps / b_vps:.2f}x voxels/s")


if __name__ == "__main__":
    main()
