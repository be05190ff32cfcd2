"""How far can a row of the cross-domain benchmark go? An in-domain bound, not a candidate.

Where the shipped network fails on a row, is it because it never learnt such tomograms, or
because the tomograms hold too little? To tell, the shipped network is fine-tuned on the
*exact* labels of tomograms of that very row (seeds 9301–9306 by default, used for nothing
else) — what no shipped network may do, since the independent simulator is for testing only
— and scored, every ``--score-every`` steps, on the row's calibration seeds (9103–9104) as the
benchmark scores (:func:`cross_domain.score`: post-processing defaults, exact truth, away from
the faces; F1 pooled over the seeds). The fine-tuned network has no training spectra, so it
runs on the tomograms as they are. A network that stays far below the goal even so marks the
goal as beyond what these tomograms hold for a network of this size and training budget.

Training is resumable and bit-identical when resumed (:func:`analysis.train.train`); the
checkpoint and the table are kept in ``--cache``, so an interrupted run continues where it
stopped. About 4 minutes per 100 steps of four 48³ patches on two CPU cores. Run:

    .venv/bin/python benchmarks/in_domain_bound.py                  # misaligned3, 3000 steps
    .venv/bin/python benchmarks/in_domain_bound.py --steps 1000 --score-every 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cross_domain as cd  # noqa: E402

from analysis.inference import predict  # noqa: E402
from analysis.io.atomic import atomic_output  # noqa: E402
from analysis.models import Predictor, read_checkpoint  # noqa: E402
from analysis.normalise import normalise  # noqa: E402
from analysis.train import TrainConfig, TrainingVolume, train  # noqa: E402

TRAIN_SEEDS = tuple(range(9301, 9307))
SCORE_SEEDS = (9103, 9104)
STEPS_PER_EPOCH = 100


def training_volumes(sim: str, row: str, seeds, normalisation: dict, cache: Path) -> list:
    """The row's tomograms with their exact labels, normalised as the shipped network's."""
    volumes = []
    for seed in seeds:
        tomo, labels, _ = cd.tomogram(sim, row, seed, False, cache)
        target = (labels > 0).astype(np.uint8)
        volumes.append(TrainingVolume(normalise(tomo, normalisation), target, name=str(seed)))
    return volumes


def pooled_scores(model: Predictor, tomograms) -> dict:
    """Vesicle precision, recall and F1 pooled over ``tomograms`` ((tomogram, labels, voxel
    size) each), mean Dice, and F1 and recall per tomogram; the network runs unmatched."""
    per = []
    for tomo, labels, vs in tomograms:
        probability = predict(tomo, vs, model, match_spectrum=False)
        per.append(cd.score(probability, tomo, labels, vs))
    matched = sum(s["n_matched"] for s in per)
    precision = matched / max(sum(s["n_pred"] for s in per), 1)
    recall = matched / sum(s["n_true"] for s in per)
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    out = {"f1": f1, "precision": precision, "recall": recall}
    out["dice"] = float(np.mean([s["dice"] for s in per]))
    for i, s in enumerate(per):
        out[f"f1_{i}"], out[f"recall_{i}"] = s["f1"], s["recall"]
    return out


def run(args: argparse.Namespace) -> pd.DataFrame:
    folder = args.cache / "in_domain_bound"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{args.simulator}_{args.row}_s{args.seed}_lr{args.lr:g}_{args.steps}"
    checkpoint = folder / f"{name}.pt"
    table_path = folder / f"{name}.csv"
    rows = pd.read_csv(table_path).to_dict("records") if table_path.exists() else []
    done = {int(r["steps"]) for r in rows}
    shipped = Predictor.load(args.network)
    volumes = training_volumes(
        args.simulator, args.row, args.train_seeds, shipped.checkpoint["normalisation"], args.cache
    )
    scored = [cd.tomogram(args.simulator, args.row, s, False, args.cache) for s in args.seeds]
    if 0 not in done:
        rows.append({"steps": 0, **pooled_scores(shipped, scored)})
    epochs = args.steps // STEPS_PER_EPOCH
    cfg = TrainConfig(
        epochs=epochs,
        steps_per_epoch=STEPS_PER_EPOCH,
        lr=args.lr,
        seed=args.seed,
        val_every=epochs,  # one validation, at the end: the scores below are the point
    )
    every = max(1, args.score_every // STEPS_PER_EPOCH)
    for stop in range(every, epochs + 1, every):
        if stop * STEPS_PER_EPOCH in done:
            continue
        trained = int(read_checkpoint(checkpoint)["epoch"]) if checkpoint.exists() else 0
        if trained > stop:  # stopped while scoring a later chunk: this network is gone
            continue
        if trained < stop:
            train(
                volumes,
                volumes[:1],
                checkpoint,
                voxel_size_nm=2.2,
                config=cfg,
                resume=True,
                init_from=args.network,
                stop_after_epoch=stop,
                progress=False,
            )
        rows.append(
            {"steps": stop * STEPS_PER_EPOCH, **pooled_scores(Predictor.load(checkpoint), scored)}
        )
        table = pd.DataFrame(rows).sort_values("steps")
        with atomic_output(table_path) as tmp:
            table.to_csv(tmp, index=False)
        print(table.round(3).to_string(index=False), flush=True)
    return pd.DataFrame(rows).sort_values("steps")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--network", type=Path, default=cd.ROOT / "src/analysis/weights/sv_unet3d.pt"
    )
    parser.add_argument("--simulator", default="testsim", choices=sorted(cd.ROWS))
    parser.add_argument("--row", default="misaligned3")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=list(TRAIN_SEEDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SCORE_SEEDS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--score-every", type=int, default=500)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=cd.ROOT / "benchmarks/results/cross_domain")
    args = parser.parse_args(argv)
    if args.steps % STEPS_PER_EPOCH or args.steps <= 0:
        parser.error(f"--steps must be a positive multiple of {STEPS_PER_EPOCH}")
    table = run(args)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
