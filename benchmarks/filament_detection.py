"""How well connectors and tethers are found and counted, on generated tomograms.

Two sets of seeded synthetic synapses (128 × 256 × 256 voxels at 2.2 nm, 160 vesicles,
filaments placed up to 4 nm off the line of closest approach of their boundaries):

* calibration, seeds 501–508 (``filtrain``): the straight-path cuts ``max_path_grey``, on a
  0.05 SD grid. Connectors: the best pooled F1 (searched together with the tether cut; the
  package keeps −1.2, within 0.01 of the best, where the counts are not inflated).
  Tethers: the cut whose totals per tomogram come closest to the truth (smallest mean
  |found / true − 1|): about 15 a tomogram, so a few false or missed ones move a total by
  20 %, and the best F1 counts 30 % too many;
  that rule would put the connector cut at −1.1 (recall 0.763 at precision 0.744 instead of
  0.722 at 0.798), and the run prints its cut for both kinds;
* held out, seeds 301–303 (the book's test set): the scores reported;
* fresh held out (``--fresh``, seeds 311–320 under the stem ``filfresh``, generated on first
  use into the ignored data folder): the test split's generator (v3) and default imaging, on
  seeds nothing else uses, to tell a change of the held-out pair scores from the noise of
  three tomograms (about 90 true pairs each). Per tomogram, the pair-level counts
  (:func:`pairs_per_tomogram`) and what users export; run it with another version of the
  package on ``PYTHONPATH`` for paired differences. With the package's cuts: recall 0.688,
  precision 0.797 (913 true pairs); the package before commit 7bef97e, 0.704 / 0.790, so
  that change costs 0.017 of recall per tomogram (95 % t interval 0.002–0.032; tethers).

The true vesicles are the boundaries, so that only the filament search is scored. One run
per tomogram with ``max_path_grey=None`` gives every cut at once
(:func:`analysis.evaluate.filament_curve`); the baselines are plain hierarchical thresholding
(Pyto's method: every piece that joins two boundaries, up to a threshold) and one fixed pair
of cuts for every tomogram. Counts are pooled over the tomograms of a set.

Per kind, the pair-level counts say where the misses are (:func:`pair_table`): true pairs
the hierarchy never joined, and pairs it joined whose darkest straight path is lighter than
the cut. On the calibration set at the package's cuts (generator v3, default imaging):
connectors recall 0.728 at precision 0.827, tethers 0.687 at 0.664; of 168 missed
connectors 22 were never joined and 146 too light — and faint in the data themselves: the
mean grey along each missed connector's own segment, as the generator drew it, is −0.98 SD
(median; −1.70 for those found), lighter than the cut of −1.2.

By direction (:func:`by_orientation`): the missing wedge leaves a filament along the beam
its contrast and blurs one across it, so recall falls with a true filament's angle to the
beam — connectors within 30° of it 0.95, 30–60° 0.84, beyond 60° 0.59 on the calibration set
(held out 1.00 / 0.88 / 0.76; fresh 311–320 0.92 / 0.78 / 0.60), the darkest path of those
joined −1.8 / −1.6 / −1.3 SD (median, calibration). The generator's AZ membrane has its
normal along y, so all its tethers lie across the beam (and along the tilt axis).

Beside these pair-level scores, the run scores what users export: the connectors and tethers
of every true vesicle (the pieces of one pair merged into one filament, as
:func:`analysis.active_zone.find_filaments` does by default) against the generator's truth —
total counts per tomogram, the mean absolute error, bias and fraction of vesicles with the
exact count (:func:`analysis.evaluate.count_errors`, over every vesicle of a tomogram), the
tethered and connected fractions of the proximal vesicles (0–45 nm from the AZ) and per
Pyto distance bin — with the package's cuts, on both sets; and how far apart the pieces of
one true filament lie. The generator puts tethers only across gaps up to 14 nm, connectors
only across gaps up to 12 nm, and more vesicles near the AZ: the fractions by distance
recover those rules, they say nothing of biology.

By default the tomograms are the cached ones, imaged at the generator's per-image SNR of
0.5. With ``--snr`` the same phantoms are imaged again at each SNR given (in memory, about
23 s a tomogram on one core: 11 tomograms an SNR). The lines of :data:`analysis.active_zone.cuts.PATH_CUT_MODEL` are fitted
there: per kind, cut = intercept + slope × membrane contrast (each tomogram its own), through
the package's cuts at the generator's SNR (0.5, the calibration set's mean contrast; chosen
as above), with the slope that gives the best F1 of the calibration set on average over the
SNRs; the held-out scores follow, with the package's cuts ("auto"), with fixed cuts, and with each
SNR's own best.
``--cache DIR`` keeps each tomogram's candidate filaments there, under a hash of the code
that found them. Run:

    .venv/bin/python benchmarks/filament_detection.py --cache benchmarks/results/filaments
    .venv/bin/python benchmarks/filament_detection.py --snr 0.25 0.5 0.7 1 2 --cache benchmarks/results/filaments
    .venv/bin/python benchmarks/filament_detection.py --fresh 311 312 313 314 315 316 317 318 319 320 --cache benchmarks/results/filaments
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.active_zone import (
    count_per_vesicle,
    filaments_by_distance,
    find_filaments,
    vesicle_distances,
)
from analysis.active_zone.cuts import CONTRAST_RANGE, PATH_CUT_MODEL, path_cuts
from analysis.active_zone.filaments import angle_to_beam_deg
from analysis.evaluate import count_errors, filament_curve, filament_detection, filaments_found
from analysis.evaluate.matching import filament_key
from analysis.io import label_table, read_tomogram
from analysis.synthetic import example_files, make_synapse
from analysis.synthetic.imaging import Microscope

CALIBRATION = ("filtrain", tuple(range(501, 509)))
HELD_OUT = ("test", (301, 302, 303))
#: File stem of the fresh held-out tomograms (``--fresh``): the test split's generator and
#: imaging, under a name of their own so that they are never taken for the test split.
FRESH_NAME = "filfresh"
PATH_CUTS = np.round(np.arange(-2.0, -0.25, 0.05), 2)
#: the package's cuts at the generator's SNR (calibration seeds' mean contrast), for every
#: tomogram
FIXED_CUTS = {"connector": -1.2, "tether": -0.85}


class Run(NamedTuple):
    """All candidate filaments of one tomogram (no path cut), its truth, its contrast, and
    its true vesicles' distances to the AZ (``vesicle_id``, ``az_membrane_distance_nm``)."""

    found: pd.DataFrame
    truth: pd.DataFrame
    contrast: float
    vesicles: pd.DataFrame


def code_hash() -> str:
    """Hash of the code a run depends on: the generator and the filament search (the cuts,
    which a run without them does not use, left out)."""
    import analysis

    root = Path(analysis.__file__).parent
    files = sorted((root / "synthetic").glob("*.py")) + sorted((root / "active_zone").glob("*.py"))
    text = b"".join(f.read_bytes() for f in files if f.name != "cuts.py")
    return hashlib.sha1(text).hexdigest()[:12]


def run(name: str, seed: int, snr: float | None = None, cache: Path | None = None) -> Run:
    """Find the filaments of one generated tomogram: the cached one, or imaged at ``snr``."""
    if cache is not None:
        path = cache / f"{name}_s{seed}_snr{snr}_{code_hash()}.pkl"
        if path.exists():
            with open(path, "rb") as f:
                return pickle.load(f)
        result = run(name, seed, snr)
        cache.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        with open(part, "wb") as f:
            pickle.dump(result, f)
        part.rename(path)
        return result
    if snr is None or snr == Microscope().snr:
        files = example_files(name, seed=seed)
        tomo = read_tomogram(files["tomogram"])
        data, voxel_size_nm = tomo.data, tomo.voxel_size_nm
        labels = read_tomogram(files["labels"]).data.astype(np.int32)
        az_mask = read_tomogram(files["az_mask"]).data > 0
        region_mask = read_tomogram(files["region_mask"]).data > 0
        truth = pd.read_csv(files["filaments"])
    else:
        synapse = make_synapse(seed=seed, microscope=Microscope(snr=snr))
        phantom = synapse.phantom
        data, voxel_size_nm = synapse.tomogram, phantom.geometry.voxel_size_nm
        labels, az_mask, region_mask = phantom.labels, phantom.az_mask, phantom.region_mask
        truth = phantom.filaments
    result = find_filaments(data, labels, az_mask, region_mask, voxel_size_nm, max_path_grey=None)
    vesicles = vesicle_distances(
        label_table(labels, voxel_size_nm), labels, az_mask, voxel_size_nm
    )[["vesicle_id", "az_membrane_distance_nm"]]
    return Run(result.table, truth, result.membrane_contrast, vesicles)


def pooled_curve(runs, by: str, cuts=None) -> pd.DataFrame:
    """Recall, precision and F1 at each cut of column ``by``, counts pooled over ``runs``."""
    curves = []
    for found, truth, *_ in runs:
        levels = cuts if cuts is not None else sorted(set(found[by]))
        curve = filament_curve(found, truth, levels, by=by)
        curve["hits"] = curve["recall"] * curve["n_true"]
        curve["right"] = curve["precision"] * curve["n_found"]
        curves.append(curve)
    total = pd.concat(curves).groupby("max_threshold")[["hits", "n_true", "right", "n_found"]]
    out = total.sum()
    out["recall"] = out["hits"] / out["n_true"]
    out["precision"] = out["right"] / out["n_found"].clip(lower=1)
    out["f1"] = 2 * out["recall"] * out["precision"] / (out["recall"] + out["precision"])
    return out[["recall", "precision", "f1", "n_found"]].fillna(0.0)


def kept(r: Run, cuts="auto") -> pd.DataFrame:
    """The filaments of a run that pass the path cuts: ``{kind: cut}``, or "auto" (the
    package's, from the run's membrane contrast)."""
    mine = path_cuts(r.contrast) if cuts == "auto" else cuts
    return r.found[r.found["path_grey"] <= r.found["kind"].map(mine)]


def pooled_scores(runs, cuts) -> dict:
    """Recall, precision and F1 with a path cut per kind, counts pooled over ``runs``.

    ``cuts`` is one ``{kind: cut}`` for every run, or "auto": each run's own cuts from its
    membrane contrast.
    """
    hits = n_true = right = n_found = 0
    for r in runs:
        scores = filament_detection(kept(r, cuts), r.truth)
        hits += scores["recall"] * scores["n_true"]
        n_true += scores["n_true"]
        right += scores["precision"] * scores["n_found"]
        n_found += scores["n_found"]
    recall, precision = hits / n_true, right / max(n_found, 1)
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return {"recall": recall, "precision": precision, "f1": f1}


def pair_table(runs, cuts="auto") -> pd.DataFrame:
    """Pair-level counts per kind, pooled over ``runs``, and where the misses are.

    Per kind and for both: true pairs, pairs found, hits, true pairs the hierarchy never
    joined (``no_candidate``) and those it joined whose darkest straight path is lighter than
    the cut (``too_light``); recall and precision as :func:`filament_detection` counts them.
    """
    columns = ["kind", "vesicle_a", "vesicle_b"]
    names = ("true", "found", "hits", "no_candidate", "too_light")
    counts = {kind: dict.fromkeys(names, 0) for kind in ("connector", "tether")}
    for r in runs:
        candidates = {filament_key(*row) for row in r.found[columns].itertuples(False)}
        found = {filament_key(*row) for row in kept(r, cuts)[columns].itertuples(False)}
        for key in {filament_key(*row) for row in r.truth[columns].itertuples(False)}:
            mine = counts[key[0]]
            mine["true"] += 1
            mine["hits"] += key in found
            mine["no_candidate"] += key not in candidates
            mine["too_light"] += key in candidates and key not in found
        for key in found:
            counts[key[0]]["found"] += 1
    table = pd.DataFrame(counts).T
    table.loc["both"] = table.sum()
    table["recall"] = table["hits"] / table["true"]
    table["precision"] = table["hits"] / table["found"].clip(lower=1)
    return table


def calibrate(runs) -> tuple[dict, float]:
    """The pair of cuts (connector, tether) of the best pooled F1, and that F1."""
    best, best_f1 = None, -1.0
    for connector in PATH_CUTS:
        for tether in PATH_CUTS:
            cuts = {"connector": float(connector), "tether": float(tether)}
            f1 = pooled_scores(runs, cuts)["f1"]
            if f1 > best_f1 + 1e-12:
                best, best_f1 = cuts, f1
    return best, best_f1


def cut_for_totals(runs, kind: str) -> tuple[float, float, int]:
    """The cut of ``kind`` whose totals per tomogram come closest to the truth: the smallest
    mean |found / true − 1| over ``runs`` (the darker cut on a tie), that mean, and how many
    tomograms it leaves within 20 %."""
    ranks = [ranked(r)[kind] for r in runs]
    best = (np.inf, None, 0)
    for cut in PATH_CUTS:
        off = [np.searchsorted(r.greys, cut, side="right") / max(r.n_true, 1) - 1 for r in ranks]
        mean = float(np.mean(np.abs(off)))
        if mean < best[0] - 1e-12:
            best = (mean, float(cut), int(np.sum(np.abs(np.array(off)) <= 0.2 + 1e-9)))
    return best[1], best[0], best[2]


#: Bins of a filament's angle to an axis (degrees): along it, oblique, across it.
ANGLE_BINS = (0, 30, 60, 90)


def by_orientation(runs, cuts="auto") -> pd.DataFrame:
    """Recall of the true pairs of ``runs`` (pooled) by the angle of each true filament to
    the tilt axis (y, as the generator images) and to the beam (z), per kind, with the
    package's cuts; ``path_grey`` is the median darkest-path grey of the true pairs the
    hierarchy joined (SD of the remainder).

    The missing wedge leaves whole the Fourier plane of a filament along the beam (its
    cross-section's) and cuts into that of every other direction: the angle to the beam
    decides most of what is found.
    """
    columns = ["kind", "vesicle_a", "vesicle_b"]
    parts = []
    for r in runs:
        keys = [filament_key(*row) for row in r.found[columns].itertuples(False)]
        greys = r.found.assign(key=keys).groupby("key")["path_grey"].min()
        part = filaments_found(kept(r, cuts), r.truth)
        ends = part[["z0_vox", "y0_vox", "x0_vox", "z1_vox", "y1_vox", "x1_vox"]].to_numpy()
        direction = ends[:, 3:] - ends[:, :3]
        part["to_beam"] = angle_to_beam_deg(direction)
        # the tilt axis is y: the beam's angle with the axes rolled by one
        part["to_tilt_axis"] = angle_to_beam_deg(np.roll(direction, -1, axis=1))
        part["path_grey"] = [
            greys.get(filament_key(*row), np.nan) for row in part[columns].itertuples(False)
        ]
        parts.append(part)
    pairs = pd.concat(parts, ignore_index=True)
    tables = []
    for axis in ("to_tilt_axis", "to_beam"):
        angle = pd.cut(pairs[axis], ANGLE_BINS, include_lowest=True)
        table = pairs.groupby(["kind", angle], observed=True).agg(
            true=("found", "size"), recall=("found", "mean"), path_grey=("path_grey", "median")
        )
        tables.append(table.rename_axis(["kind", "angle_deg"]).assign(axis=axis))
    return pd.concat(tables).reset_index().set_index(["axis", "kind", "angle_deg"])


#: The proximal zone, where the tethered fraction is read (Pyto's papers: 0–45 nm).
PROXIMAL_NM = (0.0, 45.0)


def per_vesicle(r: Run, filaments: pd.DataFrame, offset: int = 0) -> pd.DataFrame:
    """Distance to the AZ and counts of every true vesicle of a run, for ``filaments`` (found
    or true); ``offset`` is added to the ids, to pool tomograms."""
    counts = count_per_vesicle(filaments, r.vesicles["vesicle_id"])
    out = r.vesicles.merge(counts, on="vesicle_id")
    out["vesicle_id"] += offset
    return out


def pieces(filaments: pd.DataFrame) -> pd.DataFrame:
    """The table as it was before merging: each filament once per piece (as Pyto counts)."""
    return filaments.loc[filaments.index.repeat(filaments["n_pieces"])]


def count_tables(runs) -> dict[str, pd.DataFrame]:
    """Per-vesicle tables of every run, pooled: ``true``, ``found`` (the package's cuts) and
    ``pieces`` (the same, counted by piece)."""
    tables: dict[str, list] = {"true": [], "found": [], "pieces": []}
    for k, r in enumerate(runs):
        found = kept(r)
        for name, filaments in (("true", r.truth), ("found", found), ("pieces", pieces(found))):
            tables[name].append(per_vesicle(r, filaments, offset=100_000 * k))
    return {name: pd.concat(t, ignore_index=True) for name, t in tables.items()}


def count_row(tables: dict[str, pd.DataFrame]) -> dict:
    """Totals, per-vesicle errors and proximal fractions of per-vesicle tables."""
    errors = count_errors(tables["found"], tables["true"])
    by_piece = count_errors(tables["pieces"], tables["true"])
    row = {}
    for kind, ends in (("connectors", 2), ("tethers", 1)):  # a connector counts at both ends
        row[f"{kind}_true"] = errors[f"{kind}_true"] // ends
        row[f"{kind}_found"] = errors[f"{kind}_found"] // ends
        row[f"{kind}_pieces"] = by_piece[f"{kind}_found"] // ends
        for score in ("mae", "bias", "exact"):
            row[f"{kind}_{score}"] = errors[f"{kind}_{score}"]
    row["exact_both"] = errors["exact"]
    for name in ("true", "found"):
        proximal = filaments_by_distance(tables[name], PROXIMAL_NM).iloc[0]
        row[f"proximal_tethered_{name}"] = proximal["tethered"]
        row[f"proximal_connected_{name}"] = proximal["connected"]
    return row


def counts_report(label: str, runs, seeds) -> None:
    """What users export, against the truth: per tomogram, pooled, and per distance bin."""
    rows = []
    for seed, r in zip(seeds, runs, strict=True):
        rows.append({"seed": seed, **count_row(count_tables([r]))})
    pooled = count_tables(runs)
    rows.append({"seed": "pooled", **count_row(pooled)})
    table = pd.DataFrame(rows).set_index("seed")
    print(f"{label}: counts per tomogram with the package's cuts (true / found / pieces, as")
    print("counted before merging; per vesicle: MAE, bias = mean(found - true), exact =")
    print("fraction of vesicles with the true count, over every vesicle of the tomogram):")
    for kind in ("connectors", "tethers"):
        columns = [c for c in table.columns if c.startswith(kind)]
        print(table[columns].round(3).to_string())
    columns = ["exact_both", *[c for c in table.columns if c.startswith("proximal")]]
    print(table[columns].round(3).to_string())
    totals = table.drop(index="pooled")
    for kind in ("connectors", "tethers"):
        off = totals[f"{kind}_found"] / totals[f"{kind}_true"] - 1
        print(f"  {kind}: totals off the truth by {off.min():+.0%} to {off.max():+.0%}")
    off = totals["proximal_tethered_found"] - totals["proximal_tethered_true"]
    print(f"  tethered fraction 0-45 nm off the truth by {off.min():+.3f} to {off.max():+.3f}")
    print(f"{label}: per Pyto distance bin (nm), pooled, true / found:")
    true_bins, found_bins = (filaments_by_distance(pooled[n]) for n in ("true", "found"))
    bins = true_bins[["from_nm", "to_nm", "n_vesicles"]].copy()
    for column in ("tethered", "connected", "tethers_per_vesicle", "connectors_per_vesicle"):
        bins[column] = [
            f"{t:.2f} / {f:.2f}" for t, f in zip(true_bins[column], found_bins[column], strict=True)
        ]
    print(bins.to_string(index=False))


def piece_report(runs) -> None:
    """How far apart the pieces of one true filament lie (merged by the package's default)."""
    gaps, n = [], {"connector": [0, 0], "tether": [0, 0]}
    columns = ["kind", "vesicle_a", "vesicle_b"]
    for r in runs:
        truth = {filament_key(*row) for row in r.truth[columns].itertuples(False)}
        found = kept(r)
        right = [filament_key(*row) in truth for row in found[columns].itertuples(False)]
        for (kind, n_pieces, gap), ok in zip(
            found[["kind", "n_pieces", "piece_gap_nm"]].itertuples(False), right, strict=True
        ):
            if ok:
                n[kind][0] += 1
                n[kind][1] += n_pieces > 1
                if n_pieces > 1:
                    gaps.append((kind, gap))
    gaps = pd.DataFrame(gaps, columns=["kind", "gap_nm"])
    for kind, (total, several) in n.items():
        mine = gaps.loc[gaps["kind"] == kind, "gap_nm"]
        print(
            f"  true {kind}s found: {total}, {several} of them in several pieces, whose widest "
            f"gap is {mine.median():.1f} nm (median), {mine.quantile(0.9):.1f} nm (90 %), "
            f"{mine.max():.1f} nm (largest)"
        )


class Ranked(NamedTuple):
    """The candidate pairs of one kind in one tomogram, by darkest path: the path greys
    (rising), how many of the first k are true, and how many true pairs there are."""

    greys: np.ndarray
    hits: np.ndarray
    n_true: int


def ranked(r: Run) -> dict[str, Ranked]:
    """Per kind, the pairs of a run ranked for fast counts at any cut (as filament_detection
    counts them: distinct pairs)."""
    columns = ["kind", "vesicle_a", "vesicle_b"]
    truth = {filament_key(*row) for row in r.truth[columns].itertuples(False)}
    out = {}
    for kind in ("connector", "tether"):
        rows = r.found[r.found["kind"] == kind]
        pairs = {}
        for k, a, b, grey in rows[[*columns, "path_grey"]].itertuples(False):
            key = filament_key(k, a, b)
            pairs[key] = min(grey, pairs.get(key, np.inf))
        keys = sorted(pairs, key=pairs.get)
        greys = np.array([pairs[k] for k in keys])
        hits = np.cumsum([k in truth for k in keys]).astype(int)
        out[kind] = Ranked(greys, hits, sum(t[0] == kind for t in truth))
    return out


def fast_f1(ranks, cuts_per_run) -> float:
    """Pooled F1 of ranked runs, each with its own ``{kind: cut}``."""
    hits = found = n_true = 0
    for rank, cuts in zip(ranks, cuts_per_run, strict=True):
        for kind, r in rank.items():
            n = int(np.searchsorted(r.greys, cuts[kind], side="right"))
            hits += r.hits[n - 1] if n else 0
            found += n
            n_true += r.n_true
    recall, precision = hits / max(n_true, 1), hits / max(found, 1)
    return 2 * recall * precision / (recall + precision) if hits else 0.0


def fit_slopes(sets, anchor: tuple[float, dict]) -> dict[str, tuple[float, float]]:
    """Per kind, (intercept, slope) of the cut line through ``anchor`` with the best mean F1
    over ``sets``.

    ``sets``: one list of runs per SNR; ``anchor``: (contrast, {kind: cut}), the cuts at
    the generator's own SNR at its mean contrast, which the line keeps. Each kind in turn,
    twice, on a 0.05 grid of slopes.
    """
    ranks = [[ranked(r) for r in runs] for runs in sets]
    contrasts = [[r.contrast for r in runs] for runs in sets]
    centre, at_centre = anchor
    slopes = dict.fromkeys(at_centre, 0.0)

    def mean_f1(slopes):
        total = 0.0
        for rank, cs in zip(ranks, contrasts, strict=True):
            cuts = [{k: at_centre[k] + b * (c - centre) for k, b in slopes.items()} for c in cs]
            total += fast_f1(rank, cuts)
        return total / len(sets)

    grid = np.round(np.arange(-1.0, 0.01, 0.05), 2)
    for _ in range(2):
        for kind in slopes:
            slopes[kind] = max(grid, key=lambda b: mean_f1({**slopes, kind: b}))
    return {k: (at_centre[k] - b * centre, b) for k, b in slopes.items()}


def at_recall(curve: pd.DataFrame, recall: float) -> str:
    """The best precision where recall is at least ``recall``."""
    ok = curve[curve["recall"] >= recall]
    return f"{ok['precision'].max():.3f}" if len(ok) else "–"


def scores_text(row: dict) -> str:
    return f"recall {row['recall']:.3f}, precision {row['precision']:.3f}, F1 {row['f1']:.3f}"


def at_generator_snr(cache: Path | None = None) -> None:
    """The scores on the cached tomograms (SNR 0.5): package cuts, fixed cuts, Pyto; the
    counts per vesicle."""
    calibration = [run(CALIBRATION[0], s, cache=cache) for s in CALIBRATION[1]]
    best, best_f1 = calibrate(calibration)
    print(
        f"calibration ({len(calibration)} tomograms): best F1 {best_f1:.3f} at fixed cuts "
        f"{best}; with the package's cuts: {scores_text(pooled_scores(calibration, 'auto'))}"
    )
    for kind in ("connector", "tether"):
        cut, off, within = cut_for_totals(calibration, kind)
        print(
            f"  {kind} cut with totals closest to the truth: {cut} (mean |found/true - 1| "
            f"{off:.3f}, {within} of {len(calibration)} within 20 %)"
        )
    mean_contrast = np.mean([r.contrast for r in calibration])
    print(
        f"  the package's cuts at the mean contrast {mean_contrast:.3f}: {path_cuts(mean_contrast)}"
    )
    held = [run(HELD_OUT[0], s, cache=cache) for s in HELD_OUT[1]]
    contrasts = [r.contrast for r in calibration + held]
    print(f"  membrane contrast {min(contrasts):.2f}–{max(contrasts):.2f} SD")
    # tomograms differ: the spread of the scores over all of them, at the package's cuts
    each = [pooled_scores([r], "auto") for r in calibration + held]
    print(
        f"  per tomogram with the package's cuts ({len(each)}, both sets): recall "
        f"{min(e['recall'] for e in each):.2f}–{max(e['recall'] for e in each):.2f}, precision "
        f"{min(e['precision'] for e in each):.2f}–{max(e['precision'] for e in each):.2f}"
    )
    tested = pooled_curve(held, "path_grey", PATH_CUTS)
    plain = pooled_curve(held, "threshold")
    print(f"held out ({len(held)} tomograms), pooled:")
    for name, cuts in (
        ("package's cuts (auto)", "auto"),
        (f"fixed cuts {FIXED_CUTS}", FIXED_CUTS),
        (f"calibrated fixed cuts {best}", best),
    ):
        print(f"  straight-path test, {name}: {scores_text(pooled_scores(held, cuts))}")
    first = plain[plain["recall"] >= 0.8].iloc[0]
    print(
        f"  thresholding alone, stopped where recall first passes 0.8 ({first.name:+.1f} SD): "
        f"{scores_text(first)}"
    )
    for name, curve in (("one cut for both kinds", tested), ("thresholding alone", plain)):
        print(
            f"  {name}: best precision at recall >= 0.8: {at_recall(curve, 0.8)}, "
            f"best F1 {curve['f1'].max():.3f}"
        )
    print("held out, one straight-path cut for both kinds:")
    print(tested.iloc[::4].round(3).to_string())
    print("held out, thresholding alone by its last threshold:")
    print(plain.iloc[::3].round(3).to_string())
    for label, runs in (("calibration", calibration), ("held out", held)):
        print(f"{label}, pair level by kind with the package's cuts (misses: never joined by")
        print("the hierarchy, or joined with a darkest straight path lighter than the cut):")
        table = pair_table(runs)
        both, scores = table.loc["both"], pooled_scores(runs, "auto")  # the same counts
        assert np.isclose(both["recall"], scores["recall"]), "pair table differs"
        assert np.isclose(both["precision"], scores["precision"]), "pair table differs"
        print(table.round(3).to_string())
    for label, runs in (("calibration", calibration), ("held out", held)):
        print(f"{label}, recall by a true filament's angle to the tilt axis (y) and the beam")
        print("(z), package's cuts; path_grey: median darkest path of the true pairs joined:")
        print(by_orientation(runs).round(3).to_string())
    print("pieces of one filament, calibration set, package's cuts:")
    piece_report(calibration)
    counts_report("calibration", calibration, CALIBRATION[1])
    counts_report("held out", held, HELD_OUT[1])


def over_snr(snrs, cache: Path | None = None) -> None:
    """The cut lines fitted over ``snrs``; held-out scores with each kind of cut."""
    sets = {snr: [run(CALIBRATION[0], s, snr, cache) for s in CALIBRATION[1]] for snr in snrs}
    held = {snr: [run(HELD_OUT[0], s, snr, cache) for s in HELD_OUT[1]] for snr in snrs}
    check = sets[snrs[0]]  # the fast counts of the fit are filament_detection's
    fast = fast_f1([ranked(r) for r in check], [path_cuts(r.contrast) for r in check])
    assert abs(fast - pooled_scores(check, "auto")["f1"]) < 1e-9, "fast F1 differs"
    reference = Microscope().snr  # the generator's own: where the fixed cuts were chosen
    if reference not in sets:
        raise SystemExit(f"--snr must include the generator's own SNR, {reference}")
    # the lines go through the package's cuts at the generator's own SNR (at_generator_snr)
    centre = np.mean([r.contrast for r in sets[reference]])
    anchor = (centre, path_cuts(centre))
    lines = fit_slopes(list(sets.values()), anchor)
    for kind, (a, b) in lines.items():
        print(
            f"fitted: {kind} cut = {a:.3f} + {b:.3f} x contrast (package: {PATH_CUT_MODEL[kind]})"
        )
    contrasts = [r.contrast for runs in sets.values() for r in runs]
    print(f"contrast range {min(contrasts):.3f}-{max(contrasts):.3f} (package: {CONTRAST_RANGE})")
    rows = []
    for snr in snrs:
        best, _ = calibrate(sets[snr])
        row = {"snr": snr, "contrast": np.mean([r.contrast for r in sets[snr]])}
        row.update({f"best_{kind}": cut for kind, cut in best.items()})
        row.update({f"auto_{kind}": cut for kind, cut in path_cuts(row["contrast"]).items()})
        for label, runs, cuts in (
            ("cal_auto", sets[snr], "auto"),
            ("cal_best", sets[snr], best),
            ("held_auto", held[snr], "auto"),
            ("held_fixed", held[snr], FIXED_CUTS),
            ("held_best", held[snr], best),
        ):
            scores = pooled_scores(runs, cuts)
            row[f"{label}_R"], row[f"{label}_P"] = scores["recall"], scores["precision"]
        rows.append(row)
    print("per SNR (R: recall, P: precision; cal: seeds 501-508, held: 301-303; auto: the")
    print("package's cuts, each tomogram its own, shown at the mean contrast; best: the best")
    print(f"cuts of the calibration set at that SNR; fixed: {FIXED_CUTS} at every SNR):")
    print(pd.DataFrame(rows).round(3).to_string(index=False))


def pairs_per_tomogram(runs, seeds) -> pd.DataFrame:
    """Pair-level counts of each run alone with the package's cuts (:func:`pair_table`): one
    row per seed, both kinds together, and each kind's recall and precision."""
    rows = []
    for seed, r in zip(seeds, runs, strict=True):
        table = pair_table([r])
        row = {"seed": seed, **table.loc["both", ["true", "found", "hits"]].to_dict()}
        row["recall"], row["precision"] = table.loc["both", ["recall", "precision"]]
        for kind in ("connector", "tether"):
            row[f"{kind}_R"], row[f"{kind}_P"] = table.loc[kind, ["recall", "precision"]]
        rows.append(row)
    return pd.DataFrame(rows).set_index("seed")


def on_fresh_seeds(seeds, cache: Path | None = None) -> None:
    """Pair-level scores and counts on fresh held-out seeds, beside the test split's."""
    sets = {
        f"fresh, {FRESH_NAME} seeds {seeds[0]}-{seeds[-1]}": (FRESH_NAME, seeds),
        f"held out, test seeds {HELD_OUT[1][0]}-{HELD_OUT[1][-1]}": HELD_OUT,
    }
    for label, (name, set_seeds) in sets.items():
        runs = [run(name, s, cache=cache) for s in set_seeds]
        print(f"{label}: pair level with the package's cuts, pooled by kind and per tomogram:")
        print(pair_table(runs).round(3).to_string())
        print(pairs_per_tomogram(runs, set_seeds).round(3).to_string())
        print("recall by a true filament's angle to the tilt axis (y) and the beam (z):")
        print(by_orientation(runs).round(3).to_string())
        if name == FRESH_NAME:
            counts_report(label, runs, set_seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snr", type=float, nargs="+", help="per-image SNRs to image at")
    parser.add_argument("--cache", type=Path, help="folder for the candidate filaments")
    parser.add_argument("--fresh", type=int, nargs="+", help="fresh held-out seeds to score")
    args = parser.parse_args()
    if args.fresh:
        on_fresh_seeds(args.fresh, args.cache)
    elif args.snr:
        over_snr(args.snr, args.cache)
    else:
        at_generator_snr(args.cache)


if __name__ == "__main__":
    main()
