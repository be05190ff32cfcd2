"""Does adaptation without labels (``analysis adapt``: batch-norm statistics, or ``--method
mean-teacher``) help where a network fails?

For each row of the cross-domain benchmark (``cross_domain.py``, independent simulator by
default), the network is adapted on two **unlabelled** tomograms of that row (seeds 9201–9202:
the same specimen and imaging, other phantoms and noise) and then scored, with the exact truth,
on the row's benchmark tomograms (seeds 9101–9102, never used for adaptation), beside the
unadapted network as the package runs it (``--match-spectrum auto``, the default: the
shipped network on spectrum-matched tomograms, an adapted one, which has no training spectra
of its own, on the tomograms as they are; ``off`` scores both unmatched, as before the
matching was the default). The default rows are those where the network's F1 is below 0.95 in the
shipped table (``src/analysis/weights/cross_domain.csv``) plus the nominal row as a control:
adaptation must not spoil data the network already handles.

Beside each network's F1 and Dice, the table gives its probability map's soft Dice
(``mask_dice``): where the map gets better and the vesicles worse, the loss lies in the
post-processing's step from map to vesicles.

``analysis adapt`` then compares the two networks on the tomograms it adapted on (no labels:
the vesicles each finds alone, :mod:`analysis.adaptation_report`) and warns when adaptation
added no more vesicles than it lost; the columns ``lost``, ``new`` and ``warned`` are that
comparison, and ``f1_guarded`` the F1 of the network a user heeding the warning keeps (the
unadapted one where it warns).

Adapted checkpoints and scores are cached in ``--cache`` (the cross-domain cache), so a rerun
only computes what is new. Run:

    .venv/bin/python benchmarks/adaptation.py                          # statistics (default)
    .venv/bin/python benchmarks/adaptation.py --method mean-teacher    # adaptation.csv
    .venv/bin/python benchmarks/adaptation.py --rows misaligned nominal --steps-per-epoch 25
    .venv/bin/python benchmarks/adaptation.py --rows misaligned \
        --adapt-seeds 9203 9204 --seeds 9103 9104 --out /tmp/calibration.csv   # calibration
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cross_domain as cd  # noqa: E402

from analysis.adapt import (  # noqa: E402
    METHOD_VERSIONS,
    METHODS,
    STATISTICS_LAYERS,
    AdaptConfig,
    adapt,
)
from analysis.adaptation_report import adaptation_warning, compare_networks  # noqa: E402
from analysis.evaluate import cross_domain_scores  # noqa: E402
from analysis.inference import spectrum  # noqa: E402
from analysis.models import read_checkpoint  # noqa: E402

ADAPT_SEEDS = (9201, 9202)
SHIPPED = cd.ROOT / "src/analysis/weights/sv_unet3d.pt"


def default_rows(network: Path, simulator: str, below: float = 0.95) -> list[str]:
    """Rows where ``network`` (by its SHA-256) scores F1 < ``below`` in the shipped table,
    and the nominal row."""
    table = cross_domain_scores()
    mine = table[(table.network_sha256 == cd.digest(network)) & (table.simulator == simulator)]
    if mine.empty:
        raise SystemExit(f"{network} has no column in the shipped cross-domain table")
    return sorted(set(mine.loc[mine.f1 < below, "row"]) | {"nominal"})


def adapted_network(
    network: Path, sim: str, row: str, cfg: AdaptConfig, cache: Path, seeds=ADAPT_SEEDS
) -> Path:
    """The network adapted on the unlabelled tomograms ``seeds`` of a row (made once, cached
    under its settings and the adaptation method's version)."""
    settings = {**cfg.settings(), "method_version": METHOD_VERSIONS[cfg.method]}
    # settings added later, at their defaults: the earlier runs' keys still hold
    if settings.get("anchor_weight") == 0:
        del settings["anchor_weight"]
    if settings["method"] == "mean-teacher":
        del settings["method"]
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    tag = "" if tuple(seeds) == ADAPT_SEEDS else "_on" + "-".join(map(str, seeds))
    out = cache / "adapted" / f"{sim}_{row}_{cd.digest(network)}_{key}{tag}.pt"
    # an interrupted run is resumed; a finished one is used as it is
    if not out.exists() or read_checkpoint(out)["epoch"] < cfg.epochs:
        tomos, sizes, names = adaptation_set(sim, row, seeds, cache)
        out.parent.mkdir(parents=True, exist_ok=True)
        adapt(tomos, sizes, out, model=network, names=names, config=cfg, resume=True)
    return out


def adaptation_set(sim: str, row: str, seeds, cache: Path):
    """(tomograms, voxel sizes, names) of the unlabelled tomograms ``seeds`` of a row: their
    labels are never read."""
    tomos, sizes = [], []
    for seed in seeds:
        tomo, _, vs = cd.tomogram(sim, row, seed, False, cache)  # the labels go at once
        tomos.append(tomo)
        sizes.append(vs)
    return tomos, sizes, [f"{sim}_{row}_{seed}" for seed in seeds]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", type=Path, default=SHIPPED)
    parser.add_argument("--simulator", default="testsim", choices=sorted(cd.ROWS))
    parser.add_argument("--rows", nargs="+", help="default: F1 < 0.95 in the table, and nominal")
    parser.add_argument("--epochs", type=int, default=AdaptConfig.epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=AdaptConfig.steps_per_epoch)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--consistency-weight", type=float, default=AdaptConfig.consistency_weight)
    parser.add_argument("--lr", type=float, default=AdaptConfig.lr)
    parser.add_argument("--anchor-weight", type=float, default=AdaptConfig.anchor_weight)
    parser.add_argument("--method", default=AdaptConfig.method, choices=METHODS)
    parser.add_argument(
        "--statistics-layers", default=AdaptConfig.statistics_layers, choices=STATISTICS_LAYERS
    )
    parser.add_argument(
        "--prior-weight",
        type=float,
        default=AdaptConfig.prior_weight,
        help="statistics method: weight of the starting network's statistics",
    )
    parser.add_argument(
        "--adapt-seeds",
        nargs="+",
        type=int,
        default=list(ADAPT_SEEDS),
        help="the unlabelled tomograms adapted on (other seeds: a calibration run)",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="the tomograms scored (default 9101 9102)"
    )
    cd.add_match_spectrum_option(
        parser,
        "spectrum matching, scored and compared: auto (default, as the package segments: "
        "the shipped network matched, an adapted one not) or off (both unmatched; the "
        "table then goes to adaptation[_statistics]_plain.csv); on is refused",
    )
    parser.add_argument("--cache", type=Path, default=cd.ROOT / "benchmarks/results/cross_domain")
    parser.add_argument(
        "--out", type=Path, help="default benchmarks/results/adaptation[_statistics].csv"
    )
    args = parser.parse_args(argv)
    cfg = AdaptConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        seed=args.seed,
        consistency_weight=args.consistency_weight,
        lr=args.lr,
        anchor_weight=args.anchor_weight,
        method=args.method,
        statistics_layers=args.statistics_layers,
        prior_weight=args.prior_weight,
    )
    suffix = "_statistics" if args.method == "statistics" else ""
    suffix += "_plain" if args.match_spectrum == "off" else ""  # an off run keeps the auto table
    out = args.out or cd.ROOT / f"benchmarks/results/adaptation{suffix}.csv"
    rows = args.rows or default_rows(args.network, args.simulator)
    setting = cd.MATCH_SETTINGS[args.match_spectrum]
    if setting is True:
        parser.error(
            "an adapted network has no training spectra to match to: no --match-spectrum on"
        )
    matching = {**cd.resolve_matching({"unadapted": args.network}, setting), "adapted": False}
    summaries, changes = [], []
    for row in rows:
        adapted = adapted_network(
            args.network, args.simulator, row, cfg, args.cache, args.adapt_seeds
        )
        networks = {"unadapted": args.network, "adapted": adapted}
        table = cd.run(
            networks,
            [args.simulator],
            [row],
            False,
            args.cache,
            args.seeds,
            match_spectrum=matching,
        )
        summaries.append(cd.summarise(table))
        changes.append({"row": row, **changes_on_adaptation_set(args, row, adapted, matching)})
    summary = pd.concat(summaries, ignore_index=True)
    # the map's soft Dice beside the vesicles' F1 and Dice: a map that got better while the
    # vesicles got worse points at the post-processing, not at the adaptation
    values = ["f1", "dice", "mask_dice"]
    wide = summary.pivot_table(index="row", columns="network", values=values, sort=False)
    wide.columns = [f"{metric}_{net}" for metric, net in wide.columns]
    wide["f1_gain"] = wide["f1_adapted"] - wide["f1_unadapted"]
    wide = wide.reset_index().merge(pd.DataFrame(changes), on="row")
    wide["f1_guarded"] = wide["f1_adapted"].where(~wide["warned"], wide["f1_unadapted"])
    wide.insert(1, "simulator", args.simulator)
    wide["match_spectrum"] = matching["unadapted"]  # the starting network's; adapted: never
    write_summary(wide, out, args.network, "adapt_config", cfg)


def changes_on_adaptation_set(args, row: str, adapted: Path, matching: dict[str, bool]) -> dict:
    """What ``analysis adapt`` reports after adapting: the vesicles the two networks find
    alone on the (unlabelled) tomograms adapted on, pooled, and whether it warns (cached
    beside the adapted network, per starting network, post-processing settings and whether
    the starting network's tomograms are spectrum-matched, ``matching["unadapted"]``)."""
    key = f"{adapted.stem}_from{cd.digest(args.network)}_pp{cd.postprocess_key()}"
    if matching["unadapted"]:  # the adapted network is never matched (no training spectra)
        key += f"_ms{spectrum.MATCH_VERSION}"
    kept = args.cache / "changes" / f"{key}.json"
    if kept.exists():
        return json.loads(kept.read_text())
    tomos, sizes, _ = adaptation_set(args.simulator, row, args.adapt_seeds, args.cache)
    # "auto" where the starting network is matched: compare_networks then leaves the adapted
    # one unmatched, as analysis adapt does
    setting = "auto" if matching["unadapted"] else False
    table = compare_networks(tomos, sizes, args.network, adapted, match_spectrum=setting)
    result = {
        "lost": int(table["lost"].sum()),
        "new": int(table["new"].sum()),
        "warned": adaptation_warning(table) is not None,
    }
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(result))
    return result


def write_summary(table: pd.DataFrame, out: Path, network: Path, name: str, config) -> None:
    """Write a benchmark's table with the network's digest and its settings (a dataclass,
    as JSON in column ``name``), and print it without them."""
    table["network_sha256"] = cd.digest(network)
    table[name] = json.dumps(asdict(config), sort_keys=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(table.drop(columns=name).round(3).to_string(index=False))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
