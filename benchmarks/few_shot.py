"""How much do one or two annotated tomograms help where the network fails? (few-shot fine-tuning)

For each row of the cross-domain benchmark (independent simulator by default), the shipped
network is fine-tuned (``analysis.train.train`` with ``init_from``, as ``analysis train
--init-from``) on 1 and on 2 **annotated** tomograms of that row — seeds 9201 and 9202, the
same tomograms ``benchmarks/adaptation.py`` adapts on without their labels — and scored with
the exact truth on the row's benchmark tomograms (seeds 9101–9102, never trained on), beside
the unchanged network. This is the learning curve of chapter 7: gain per annotated tomogram.

The annotation is what a user brings: an IMOD model of closed outlines, one per slice per
vesicle, drawn with an annotator's small errors and stopping short of the poles
(:func:`analysis.synthetic.annotation.simulate_outlines` on the truth's centres and radii),
read back through :func:`analysis.train.volume_from_files` like any ``.mod``. The whole tomogram
is annotated (no ignore region).

Fine-tuned checkpoints, their annotation files and scores are cached in ``--cache`` (the
cross-domain cache); a rerun only computes what is new. Run (about 8 minutes a fine-tuning on
one core with the defaults):

    .venv/bin/python benchmarks/few_shot.py
    .venv/bin/python benchmarks/few_shot.py --rows misaligned --epochs 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adaptation  # noqa: E402
import cross_domain as cd  # noqa: E402

from analysis.io import label_table  # noqa: E402
from analysis.io.tomogram import write_mrc  # noqa: E402
from analysis.models import read_checkpoint  # noqa: E402
from analysis.synthetic.annotation import simulate_outlines, write_outline_model  # noqa: E402
from analysis.train import TrainConfig, train, volume_from_files  # noqa: E402

ANNOTATED_SEEDS = adaptation.ADAPT_SEEDS


def annotated_files(sim: str, row: str, seed: int, cache: Path) -> tuple[Path, Path]:
    """(tomogram .mrc, annotation .mod) of one training tomogram of a row, written once."""
    folder = cache / "few_shot" / "annotated"
    tomo_path = folder / f"{sim}_{row}_{seed}.mrc"
    mod_path = folder / f"{sim}_{row}_{seed}_manual.mod"
    if not (tomo_path.exists() and mod_path.exists()):
        tomo, labels, vs = cd.tomogram(sim, row, seed, False, cache)
        folder.mkdir(parents=True, exist_ok=True)
        write_mrc(tomo_path, tomo, vs)
        truth = label_table(labels, vs)
        # an annotator clicks inside the image: outlines of vesicles cut by a face are clipped
        top = np.array(labels.shape, float) - 1
        outlines = [(i, np.clip(p, 0, top)) for i, p in simulate_outlines(truth, seed=seed)]
        write_outline_model(mod_path, outlines, vs, labels.shape)
    return tomo_path, mod_path


def fine_tuned(network: Path, sim: str, row: str, n: int, cfg: TrainConfig, cache: Path) -> Path:
    """The network fine-tuned on the first ``n`` annotated tomograms of a row (cached)."""
    out = cache / "few_shot" / f"{sim}_{row}_{cd.digest(network)}_n{n}_e{cfg.epochs}.pt"
    if out.exists() and read_checkpoint(out)["epoch"] >= cfg.epochs:
        return out
    normalisation = read_checkpoint(network).get("normalisation")
    volumes, sizes, names = [], [], []
    for seed in ANNOTATED_SEEDS[:n]:
        tomo_path, mod_path = annotated_files(sim, row, seed, cache)
        volume, vs = volume_from_files(tomo_path, mod_path, normalisation=normalisation)
        volumes.append(volume)
        sizes.append(vs)
        names.append(f"{tomo_path.name} + {mod_path.name}")
    data = {"train": names, "command": "benchmarks/few_shot.py", "init_from": str(network)}
    train(
        volumes,
        [],
        out,
        voxel_size_nm=sizes[0],
        config=cfg,
        data=data,
        resume=True,
        init_from=network,
        progress=False,
    )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", type=Path, default=adaptation.SHIPPED)
    parser.add_argument("--simulator", default="testsim", choices=sorted(cd.ROWS))
    parser.add_argument("--rows", nargs="+", help="default: F1 < 0.95 in the table, and nominal")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=cd.ROOT / "benchmarks/results/cross_domain")
    parser.add_argument("--out", type=Path, default=cd.ROOT / "benchmarks/results/few_shot.csv")
    args = parser.parse_args(argv)
    cfg = TrainConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        lr=args.lr,
        warmup_steps=20,
        val_every=args.epochs,
        seed=args.seed,
    )
    rows = args.rows or adaptation.default_rows(args.network, args.simulator)
    summaries = []
    for row in rows:
        networks = {"annotated 0": args.network}
        for n in (1, 2):
            networks[f"annotated {n}"] = fine_tuned(
                args.network, args.simulator, row, n, cfg, args.cache
            )
        summaries.append(cd.summarise(cd.run(networks, [args.simulator], [row], False, args.cache)))
    summary = pd.concat(summaries, ignore_index=True)
    summary["annotated_tomograms"] = summary["network"].str.split().str[-1].astype(int)
    adaptation.write_summary(summary, args.out, args.network, "train_config", cfg)


if __name__ == "__main__":
    main()
