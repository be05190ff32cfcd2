"""Do several features of a candidate filament find more true ones than its darkest path alone?

The package keeps a pair of boundaries joined by the hierarchy when the darkest straight path
across their gap is dark enough (``max_path_grey``, a cut per kind from the membrane contrast;
``benchmarks/filament_detection.py``). This benchmark asks whether more of what is known about
a candidate pair tells true filaments from noise better. Per kind, a logistic regression
(statsmodels) on 13 features of each candidate:

* the darkest path's mean grey less the package's cut (clipped at +2 SD), its lowest sample
  and the mean of its middle half; the median over all the pair's paths; the mean of its
  neighbours (paths whose midpoints lie 0.5–1.5 voxels from its own); the fraction of the
  pair's paths below −1 SD; the darkest path in the smoothed remainder (the grey the
  hierarchy thresholds); the darkest path's offset from the central one (voxels) — all
  sampled as :func:`analysis.active_zone.find_filaments` samples its path test;
* from the hierarchy: the threshold where the pair was first joined, the filament's mean grey,
  log volume, log number of pieces and the widest gap between them.

Variants add the number of samples along the darkest path (log; its length), a flag for gaps
past the generator's rules (connectors across more than 12 nm between the vesicles' surfaces,
tethers more than 14 nm from the AZ), or the gap itself and, for connectors, the nearer
vesicle's distance to the AZ. Those describe how the generator places filaments, not how
they look. One more adds the found filament's angle to the beam (cos², and its product with
the darkest path's grey: a cut that moves with the direction), which the missing wedge makes
matter: true connectors along the beam come out darker than those across it
(``filament_detection.by_orientation``).

Data: generator version 3 at its default imaging (SNR 0.5), the true vesicles and AZ membrane
as boundaries (the filament search alone is scored), every candidate pair of
``benchmarks/filament_detection.py --cache DIR`` (made with its own functions where absent);
features are computed again from the tomograms. Fitted on the calibration tomograms only
(``filtrain``, seeds 501–508):

* leave one calibration tomogram out: fitted on seven, the probability cut chosen there for
  the most true pairs at the package's precision on those seven, then applied to the eighth;
  beside it, the package's path cut shifted by one amount for all tomograms so that it keeps
  as many pairs in all (pooled; hits are true pairs kept);
* fresh held-out tomograms (``filfresh``, seeds 311–320): fitted on all of calibration, the cut
  keeping as many pairs of each kind there as the package's cuts; pair recall and precision
  and the per-tomogram differences from the package's cuts (mean and 95 % t interval), and
  the counts users export (:func:`filament_detection.counts_report`).

Measured with the package of commit 14dd992 (the book's Performance page, "Ten fresh
tomograms"): left out one at a time, the 13 features find as many true pairs as the path cut
keeping as many (connectors 456 against 455 of 558 kept, tethers 90 against 89 of 135); on
the fresh tomograms recall 0.692, precision 0.802 against the package's 0.688 / 0.797, per
tomogram +0.003 [−0.014, +0.021] and +0.006 [−0.014, +0.026]. With the gap, length and AZ
distance: +0.024 [+0.001, +0.047] and +0.021 [+0.001, +0.041]. The angle to the beam (package of this
file's commit, calibration left out one at a time) finds no more than the path cut keeping as
many: connectors 453 against 451 of 547 kept, tethers 81 against 85 of 129 — the pairs
without a filament come out alike in every direction, and every tether of the generator
lies across the beam. Run (about a minute on one
core, the candidates cached; about 5 s a tomogram for the features):

    .venv/bin/python benchmarks/filament_features.py --cache benchmarks/results/filaments
"""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
import filament_detection as fd  # noqa: E402

# the cache's candidates were pickled by filament_detection.py run as a script, as __main__.Run
from filament_detection import Run  # noqa: E402

from analysis.active_zone import find_filaments, search_volumes  # noqa: E402
from analysis.active_zone.paths import connector_paths, sample_along, tether_paths  # noqa: E402
from analysis.evaluate.matching import filament_key  # noqa: E402
from analysis.io import read_tomogram  # noqa: E402
from analysis.synthetic import example_files  # noqa: E402

FRESH = (fd.FRESH_NAME, tuple(range(311, 321)))
#: the settings the cached candidates were found with: find_filaments' defaults
SEARCH = {k: p.default for k, p in inspect.signature(find_filaments).parameters.items()}
HIERARCHY = ["threshold", "mean_grey", "log_volume", "log_pieces", "piece_gap_nm"]
PATH = [
    "path_min",
    "path_core",
    "paths_median",
    "neighbours_mean",
    "dark_fraction",
    "smoothed_darkest",
    "offset_vox",
]
FEATURES = ["rel_path", *PATH, *HIERARCHY]
MODELS = {
    "path cut alone": ["rel_path"],
    "13 features": FEATURES,
    "path cut + angle to the beam": ["rel_path", "beam_cos2", "path_x_beam"],
    "+ path length": [*FEATURES, "log_samples"],
    "+ gap past the generator's rules": [*FEATURES, "past_rule"],
    "+ gap, length, AZ distance": [*FEATURES, "log_samples", "gap_nm", "az_nm"],
}
#: the models scored on the fresh tomograms: the one set beforehand, and the generator's
FRESH_MODELS = ("13 features", "+ gap, length, AZ distance")
#: the generator's rules: no connector across a wider gap, no tether from farther (nm)
GAP_RULE_NM = {"connector": 12.0, "tether": 14.0}


def greys(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, np.ndarray, float]:
    """What :func:`find_filaments` samples in one generated tomogram
    (:func:`analysis.active_zone.search_volumes` with its defaults): the remainder the path
    test reads and its smoothed copy the hierarchy thresholds (both in SD of the analysed
    region), the vesicle table (voxels), the AZ's distance map (voxels) and the voxel size
    (nm)."""
    files = example_files(name, seed=seed)
    tomogram = read_tomogram(files["tomogram"])
    search = search_volumes(
        tomogram.data,
        read_tomogram(files["labels"]).data.astype(np.int64),
        read_tomogram(files["az_mask"]).data > 0,
        read_tomogram(files["region_mask"]).data > 0,
        tomogram.voxel_size_nm,
    )
    return (
        search.path_values,
        search.grey,
        search.vesicle_table,
        search.az_distance_vox,
        tomogram.voxel_size_nm,
    )


def path_features(name: str, seed: int, found: pd.DataFrame) -> pd.DataFrame:
    """The straight-path features of every candidate pair of one tomogram (module notes);
    NaN for a pair without a path."""
    values, smoothed, table, az_distance_vox, voxel_size_nm = greys(name, seed)
    search_vox = SEARCH["search_nm"] / voxel_size_nm
    table = table.set_index("vesicle_id")
    centres = table[["z_vox", "y_vox", "x_vox"]].to_numpy(float)
    radii = table["radius_vox"].to_numpy(float)
    where = {int(v): k for k, v in enumerate(table.index)}
    rows = []
    for kind, a, b in found[["kind", "vesicle_a", "vesicle_b"]].itertuples(False):
        ka = where[a]
        if kind == "tether":
            reach_vox = SEARCH["max_distance_nm"] / voxel_size_nm
            paths = tether_paths(centres[ka], radii[ka], az_distance_vox, search_vox, reach_vox)
        else:
            kb = where[b]
            paths = connector_paths(centres[ka], radii[ka], centres[kb], radii[kb], search_vox)
        if not paths:
            rows.append({})
            continue
        samples = [sample_along(values, p, q) for p, q in paths]
        means = np.array([s.mean() for s in samples])
        k = int(np.argmin(means))
        middles = np.array([(p + q) / 2 for p, q in paths])
        apart = np.linalg.norm(middles - middles[k], axis=1)
        neighbours = means[(apart > 0.5) & (apart <= 1.5)]
        darkest = samples[k]
        quarter = len(darkest) // 4
        rows.append(
            {
                "path_darkest": means[k],
                "path_min": darkest.min(),
                "path_core": darkest[quarter : len(darkest) - quarter].mean(),
                "paths_median": np.median(means),
                "neighbours_mean": neighbours.mean() if len(neighbours) else means[k],
                "dark_fraction": np.mean(means < -1.0),
                "smoothed_darkest": min(sample_along(smoothed, p, q).mean() for p, q in paths),
                "offset_vox": float(np.linalg.norm(middles[k] - middles[0])),
                "n_samples": len(darkest),
            }
        )
    return pd.DataFrame(rows, index=found.index)


def pair_features(name: str, seed: int, r: Run) -> pd.DataFrame:
    """Every candidate pair of a run with its features, the package's cut and whether it is
    true; the boundaries' gap from the generator's vesicles (nm)."""
    f = r.found.copy()
    truth = pd.read_csv(example_files(name, seed=seed)["vesicles"]).set_index("vesicle_id")
    az = r.vesicles.set_index("vesicle_id")["az_membrane_distance_nm"]
    gap, az_nm = [], []
    for kind, a, b in f[["kind", "vesicle_a", "vesicle_b"]].itertuples(False):
        if kind == "tether":
            gap.append(az[a])
            az_nm.append(az[a])
        else:
            ends = truth.loc[[a, b]]
            apart = np.diff(ends[["z_nm", "y_nm", "x_nm"]].to_numpy(float), axis=0)
            gap.append(float(np.linalg.norm(apart)) - ends["radius_nm"].sum())
            az_nm.append(min(az[a], az[b]))
    f["gap_nm"], f["az_nm"] = gap, az_nm
    f["auto_cut"] = f["kind"].map(fd.path_cuts(r.contrast))
    columns = ["kind", "vesicle_a", "vesicle_b"]
    true = {filament_key(*row) for row in r.truth[columns].itertuples(False)}
    f["true"] = [filament_key(*row) in true for row in f[columns].itertuples(False)]
    f["seed"] = seed
    f = f.join(path_features(name, seed, f))
    # the same samples as the package's path test, or these features are not its paths'
    same = np.isclose(f["path_darkest"], f["path_grey"], atol=1e-4) | ~np.isfinite(f["path_grey"])
    assert same.all(), f"{name} seed {seed}: darkest path differs from find_filaments'"
    return f


def design(f: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The regression's columns (module notes) with a constant; a pair without a straight
    path gets 2 SD, lighter than any cut."""
    x = pd.DataFrame(index=f.index)
    for c in columns:
        if c == "rel_path":
            x[c] = (f["path_grey"] - f["auto_cut"]).clip(upper=2.0)
        elif c == "log_volume":
            x[c] = np.log(f["volume_nm3"])
        elif c == "log_pieces":
            x[c] = np.log(f["n_pieces"])
        elif c == "log_samples":
            x[c] = np.log(f["n_samples"])
        elif c == "beam_cos2":
            # the filament's direction: cos² of its angle to the beam (1 along it, 0 across)
            x[c] = (np.cos(np.radians(f["angle_to_beam_deg"])) ** 2).fillna(0.5)
        elif c == "path_x_beam":
            beam = (np.cos(np.radians(f["angle_to_beam_deg"])) ** 2).fillna(0.5)
            x[c] = (f["path_grey"] - f["auto_cut"]).clip(upper=2.0) * beam
        elif c == "past_rule":
            x[c] = (f["gap_nm"] > f["kind"].map(GAP_RULE_NM)).astype(float)
        else:
            x[c] = f[c].astype(float)
    return sm.add_constant(x.fillna(2.0), has_constant="add")


def columns_for(kind: str, columns: list[str]) -> list[str]:
    """A tether's AZ distance is its gap: left out once."""
    return [c for c in columns if not (kind == "tether" and c == "az_nm")]


def logit(f: pd.DataFrame, columns: list[str]):
    """The fitted logistic regression of ``true`` on the columns."""
    with warnings.catch_warnings():
        if "past_rule" in columns:
            # no true pair lies past the generator's rules: the flag separates them completely,
            # its weight runs off towards -inf (-27 after 300 steps) and every such pair is
            # dropped, which is what the flag is for
            warnings.simplefilter("ignore", ConvergenceWarning)
        return sm.Logit(f["true"].to_numpy(), design(f, columns)).fit(disp=0, maxiter=300)


def most_hits_cut(score: np.ndarray, y: np.ndarray, precision: float) -> float:
    """The score cut that keeps the most true pairs at ``precision`` or better (at least ten
    pairs kept)."""
    order = np.argsort(-score)
    hits = np.cumsum(y[order])
    n = np.arange(1, len(y) + 1)
    ok = (hits / n >= precision - 1e-9) & (n >= 10)
    k = np.flatnonzero(ok)[np.argmax(hits[ok])] if ok.any() else 0
    return score[order][k]


def leave_one_out(cal: pd.DataFrame) -> pd.DataFrame:
    """Per model and kind, pairs kept and true among them, each calibration tomogram scored
    by a fit on the others; beside them the path cut shifted to keep as many (pooled)."""
    rows = []
    for kind in ("connector", "tether"):
        f = cal[cal["kind"] == kind].reset_index(drop=True)
        y = f["true"].to_numpy()
        today = (f["path_grey"] <= f["auto_cut"]).to_numpy()
        by_path = y[np.argsort((f["path_grey"] - f["auto_cut"]).to_numpy())]
        for name, columns in MODELS.items():
            columns = columns_for(kind, columns)
            hits = kept = 0
            for seed in sorted(f["seed"].unique()):
                train, test = (f["seed"] != seed).to_numpy(), (f["seed"] == seed).to_numpy()
                model = logit(f[train], columns)
                precision = y[train & today].mean()
                cut = most_hits_cut(
                    model.predict(design(f[train], columns)).to_numpy(), y[train], precision
                )
                keep = model.predict(design(f[test], columns)).to_numpy() >= cut
                hits += int(y[test][keep].sum())
                kept += int(keep.sum())
            rows.append(
                {
                    "kind": kind,
                    "model": name,
                    "kept": kept,
                    "hits": hits,
                    "path_cut_hits": int(by_path[:kept].sum()),
                    "precision": hits / kept,
                }
            )
        rows.append(
            {
                "kind": kind,
                "model": "package's cuts",
                "kept": int(today.sum()),
                "hits": int(y[today].sum()),
                "path_cut_hits": int(y[today].sum()),
                "precision": y[today].mean(),
            }
        )
    return pd.DataFrame(rows)


def fit_at_today(cal: pd.DataFrame, columns: list[str]) -> dict:
    """Per kind, the model fitted on all of calibration and the probability cut that keeps
    as many pairs there as the package's cuts."""
    fits = {}
    for kind in ("connector", "tether"):
        f = cal[cal["kind"] == kind]
        mine = columns_for(kind, columns)
        model = logit(f, mine)
        p = np.sort(model.predict(design(f, mine)).to_numpy())[::-1]
        n_today = int((f["path_grey"] <= f["auto_cut"]).sum())
        fits[kind] = (model, mine, float(p[n_today - 1]))
    return fits


def chosen_runs(runs: list[Run], features: pd.DataFrame, seeds, fits: dict) -> list[Run]:
    """The runs with the model's choice in place of the package's cut: a kept pair's path
    grey is set to -inf, a dropped one's to +inf, so that filament_detection's functions
    count what the model keeps."""
    keep = np.zeros(len(features), bool)
    for kind, (model, columns, cut) in fits.items():
        mine = (features["kind"] == kind).to_numpy()
        keep[mine] = model.predict(design(features[mine], columns)).to_numpy() >= cut
    out = []
    for r, seed in zip(runs, seeds, strict=True):
        found = r.found.copy()
        found["path_grey"] = np.where(keep[(features["seed"] == seed).to_numpy()], -np.inf, np.inf)
        out.append(Run(found, r.truth, r.contrast, r.vesicles))
    return out


def paired_text(difference: pd.Series) -> str:
    """Mean per-tomogram difference, its 95 % t interval, and how often it is up or down."""
    ci = stats.ttest_1samp(difference, 0.0).confidence_interval(0.95)
    return (
        f"{difference.mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}], higher on "
        f"{(difference > 1e-12).sum()}/{len(difference)}, lower on {(difference < -1e-12).sum()}"
    )


def within_20(runs: list[Run]) -> str:
    """On how many tomograms each kind's total lies within 20 % of the truth."""
    rows = pd.DataFrame([fd.count_row(fd.count_tables([r])) for r in runs])
    parts = []
    for kind in ("connectors", "tethers"):
        off = rows[f"{kind}_found"] / rows[f"{kind}_true"] - 1
        parts.append(f"{kind} {(off.abs() <= 0.2 + 1e-9).sum()}/{len(rows)}")
    return "totals within 20 % of the truth: " + ", ".join(parts)


def features_of(name: str, seeds, cache: Path | None) -> tuple[list[Run], pd.DataFrame]:
    """The candidate runs of a set (filament_detection's cache) and their pairs' features."""
    runs = [fd.run(name, seed, cache=cache) for seed in seeds]
    features = [pair_features(name, s, r) for s, r in zip(seeds, runs, strict=True)]
    return runs, pd.concat(features, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, help="filament_detection.py's candidate folder")
    args = parser.parse_args()
    _, cal = features_of(*fd.CALIBRATION, args.cache)
    print("calibration (filtrain 501-508), leave one tomogram out: pairs kept, true among them,")
    print("and true among as many kept by the package's path cut shifted for all tomograms:")
    print(leave_one_out(cal).round(3).to_string(index=False))
    runs, fresh = features_of(*FRESH, args.cache)
    today = fd.pairs_per_tomogram(runs, FRESH[1])
    print(f"fresh held out ({FRESH[0]} {FRESH[1][0]}-{FRESH[1][-1]}), the package's cuts:")
    print(fd.pair_table(runs).round(3).to_string())
    print(within_20(runs))
    for name in FRESH_MODELS:
        fits = fit_at_today(cal, MODELS[name])
        print(f"##### {name}, fitted on calibration, as many pairs kept there as the package's")
        for kind, (model, _, cut) in fits.items():
            weights = ", ".join(f"{k} {v:+.2f}" for k, v in model.params.items())
            print(f"  {kind}: probability cut {cut:.3f}; coefficients {weights}")
        chosen = chosen_runs(runs, fresh, FRESH[1], fits)
        print(fd.pair_table(chosen).round(3).to_string())
        mine = fd.pairs_per_tomogram(chosen, FRESH[1])
        for column in ("recall", "precision", "connector_R", "connector_P", "tether_R", "tether_P"):
            print(
                f"  per tomogram, model - package's cuts, {column}: "
                f"{paired_text(mine[column] - today[column])}"
            )
        print(f"  {within_20(chosen)}")
        fd.counts_report(f"fresh, {name}", chosen, FRESH[1])


if __name__ == "__main__":
    main()
