"""Why does a network miss vesicles on the cross-domain rows: the network, or the post-processing?

For each (row, seed, network) of the cross-domain benchmark (:mod:`cross_domain`, its cached
tomograms and probability maps), the tomogram is segmented with the post-processing defaults
and every true vesicle that the scoring counts as missed (away from the faces) gets its cause
(:func:`analysis.evaluate.explain_misses`): dropped by a post-processing step (with the
step's reason), merged into a neighbour, not segmented by the network (under a fifth of its
voxels above the threshold), or no candidate. Counts are summed over the seeds. Run:

    .venv/bin/python benchmarks/miss_causes.py
    .venv/bin/python benchmarks/miss_causes.py --seeds 9103 9104 --rows misaligned
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cross_domain as cd
import pandas as pd

from analysis.evaluate import MISS_CAUSES, explain_misses, interior_mask
from analysis.postprocess import segment_vesicles

#: The rows where the shipped network scored F1 < 0.95 (independent simulator), and nominal.
DEFAULT_ROWS = ("misaligned", "combined_voxel3_tilt50_misaligned", "defocus3", "nominal")


def misses_of(sim: str, row: str, seed: int, network: Path, cache: Path) -> pd.DataFrame:
    """The explained misses of one network on one tomogram of a row (maps from the cache,
    predicted there if missing)."""
    tomo, labels, vs = cd.tomogram(sim, row, seed, False, cache)
    path = cd.map_path(cache, sim, row, seed, network, False)
    model = None if path.exists() else cd.load(network)
    probability = cd.probability_map(model, tomo, vs, path)
    found = segment_vesicles(probability, tomo, vs)
    return explain_misses(
        found.labels,
        labels,
        vs,
        found.table,
        probability=probability,
        region_mask=interior_mask(labels.shape, vs),
        threshold=found.threshold,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--simulator", default="testsim", choices=sorted(cd.ROWS))
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the benchmark's seeds")
    parser.add_argument("--cache", type=Path, default=cd.ROOT / "benchmarks/results/cross_domain")
    parser.add_argument("--out", type=Path, default=cd.ROOT / "benchmarks/results/miss_causes.csv")
    args = parser.parse_args(argv)
    if args.network:
        networks = {k: Path(v) for k, v in (n.split("=", 1) for n in args.network)}
    else:
        networks = {"shipped": cd.ROOT / "src/analysis/weights/sv_unet3d.pt"}
        if cd.PUBLISHED.exists():
            networks["published"] = cd.PUBLISHED
    records = []
    for row in args.rows:
        for seed in args.seeds or cd.SEEDS[args.simulator]:
            for name, path in networks.items():
                misses = misses_of(args.simulator, row, seed, path, args.cache)
                causes = misses["cause"].where(misses["cause"] != "dropped")
                causes = causes.fillna("dropped: " + misses["drop_reason"])
                for cause, n in causes.value_counts().items():
                    records.append(
                        {"row": row, "seed": seed, "network": name, "cause": cause, "n": n}
                    )
                print(f"{row:34s} {seed} {name:10s} {len(misses)} missed", flush=True)
    table = pd.DataFrame.from_records(records, columns=["row", "seed", "network", "cause", "n"])
    table.insert(0, "simulator", args.simulator)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    order = [c for c in MISS_CAUSES if c != "dropped"]
    wide = table.pivot_table(index=["row", "network"], columns="cause", values="n", aggfunc="sum")
    wide = wide.fillna(0).astype(int)
    wide = wide[[c for c in order if c in wide] + sorted(c for c in wide if c not in order)]
    pd.set_option("display.width", 200)
    print("\nmissed true vesicles by cause, summed over seeds\n" + wide.to_string())
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
