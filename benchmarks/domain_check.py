"""Calibrate the domain check (:mod:`analysis.inference.domain`) on the cross-domain benchmark.

Two commands:

``reference --network NAME=PATH``
    The reference of a network's training data: for each training tomogram recorded in the
    checkpoint (``data["train"]``: the cached sample set and varied set are found by name), the
    image numbers of the check (spectrum, polarity, wedge), stored under NAME in the package's
    ``src/analysis/inference/domain_reference.json``.
``calibrate --network NAME=PATH``
    For every row of ``benchmarks/cross_domain.py`` (both simulators) and both of its seeds,
    the tomogram (the benchmark's, from its cache, or made with its own functions) is
    measured by the check; its F1 is the benchmark's cached score where there is one
    (``--cd-cache``), else the tomogram is segmented and scored here as the benchmark does
    (``--scored`` skips such rows instead; ``--full`` segments every tomogram, which adds the
    vesicle statistics). Thresholds are then fitted on the
    calibration seeds (testsim 9101, generator 40001) so that the warning fires where
    F1 < 0.9 and stays quiet where F1 ≥ 0.95, and the confusion table is reported on the
    held-out seeds (9102, 40002). The network runs as the package runs it (``--match-spectrum
    auto``: the spectrum matched where its varied training spectra are known, and the check's
    TTA on the matched crop; ``on`` or ``off`` to insist). Features are cached per (row, seed,
    network file, simulator version, spectrum matching) in ``--cache`` (with ``--full`` also per post-processing settings); the F1 is
    always the benchmark's current one.

Run (the first shipped network, trained on the v3 generator only):

    .venv/bin/python benchmarks/domain_check.py reference \\
        --network first=benchmarks/results/cross_domain/sv_unet3d_779b3ca.pt
    .venv/bin/python benchmarks/domain_check.py calibrate \\
        --network first=benchmarks/results/cross_domain/sv_unet3d_779b3ca.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cross_domain as cd  # noqa: E402

from analysis.errors import ParameterError  # noqa: E402
from analysis.inference import domain  # noqa: E402
from analysis.io import read_tomogram  # noqa: E402
from analysis.normalise import DEFAULT_NORMALISATION, centre_and_scale  # noqa: E402

REFERENCE_JSON = ROOT / "src/analysis/inference" / domain.REFERENCE_FILE
CALIBRATION_SEEDS = {"testsim": 9101, "generator": 40001}
HELD_OUT_SEEDS = {"testsim": 9102, "generator": 40002}
#: F1 below BAD must warn, at or above GOOD must stay quiet; between, either is fine.
BAD, GOOD = 0.9, 0.95
#: Thresholds fitted (keys of domain.THRESHOLDS) -> (feature, side on which it warns). The
#: others (voxel size, polarity, wedge, foreground, and the vesicles' radii and membranes, which
#: guard against gross errors) are set by physics, not fitted to F1; where they could be fitted,
#: their fitted cut is printed for information.
FITTED = {
    "spectrum_distance": ("spectrum_distance", "above"),
    "tta_disagreement": ("tta_disagreement", "above"),
}
INFORMATION = {
    "vesicle_radii": ("radius_in_range", "below"),
    "shell_profile": ("shell_contrast", "below"),
}


def _network(spec: str) -> tuple[str, Path]:
    name, _, path = spec.partition("=")
    if not path:
        raise SystemExit(f"--network takes NAME=PATH, not {spec!r}")
    return name, Path(path)


# --- reference ------------------------------------------------------------------------------


def training_files(meta: dict) -> list[Path]:
    """The training tomograms a checkpoint records, found in the cached data sets by name."""
    from analysis.synthetic import sample_dataset
    from analysis.synthetic.variety import varied_dataset

    names = list((meta.get("data") or {}).get("train") or [])
    if not names:
        raise SystemExit("the checkpoint records no training tomograms (data['train'])")
    found = {Path(f["tomogram"]).name: Path(f["tomogram"]) for f in sample_dataset()["train"]}
    n_varied = sum(name.startswith("varied_train_") for name in names)
    if n_varied:
        for f in varied_dataset("train", n_varied):
            found[Path(f["tomogram"]).name] = Path(f["tomogram"])
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"training tomograms not found in the cached data sets: {missing[:5]}")
    return [found[n] for n in names]


def image_features_of(tomogram, voxel_size_nm: float, meta: dict) -> dict:
    """The check's image numbers of a tomogram, as :func:`domain.domain_features` takes them."""
    centre, scale = centre_and_scale(tomogram, meta["normalisation"] or DEFAULT_NORMALISATION)
    model_vs = meta["voxel_size_nm"]
    _, crop = domain.network_view(tomogram, voxel_size_nm, model_vs, centre=centre, scale=scale)
    features = domain.image_features(crop, model_vs)
    features["grid_log_amplitude"] = domain.matching_log_amplitude(
        tomogram, voxel_size_nm, model_vs, centre=centre, scale=scale
    )
    return features


def make_reference(name: str, path: Path, label: str | None = None) -> None:
    from analysis.models import load

    _, meta = load(path)
    files = training_files(meta)
    rows = []
    for i, file in enumerate(files):
        tomo = read_tomogram(file, mmap=True)
        rows.append(image_features_of(tomo.data, tomo.voxel_size_nm, meta))
        print(f"{i + 1}/{len(files)} {file.name}", flush=True)
    command = f"benchmarks/domain_check.py reference --network {name}={path}"
    if label:
        command, name = f"{command} --name {label}", label
    entry = {
        "name": name,
        "train": [f.name for f in files],
        "command": command,
        "crop_shape": list(domain.CROP_SHAPE),
        "edges_per_nm": list(domain.SPECTRUM_EDGES_PER_NM),
        "log_amplitude": [[round(v, 4) for v in r["log_amplitude"]] for r in rows],
        "grid_log_amplitude": [[round(float(v), 4) for v in r["grid_log_amplitude"]] for r in rows],
        "polarity_skew": [round(r["polarity_skew"], 4) for r in rows],
        "wedge_depth": [round(r["wedge_depth"], 3) for r in rows],
        "wedge_margin": [round(r["wedge_margin"], 3) for r in rows],
    }
    data = json.loads(REFERENCE_JSON.read_text()) if REFERENCE_JSON.exists() else {}
    refs = [r for r in data.get("references", []) if r["name"] != name]
    data = {"format": 1, "references": [*refs, entry]}
    tmp = REFERENCE_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tmp.replace(REFERENCE_JSON)
    skew = np.array(entry["polarity_skew"])
    print(
        f"{REFERENCE_JSON}: reference {name!r} of {len(rows)} tomograms "
        f"(polarity skew {skew.min():+.3f} to {skew.max():+.3f})"
    )


# --- calibration ----------------------------------------------------------------------------


def _cached_score(cd_cache: Path, key: str) -> dict | None:
    hit = cd_cache / f"{key}.json"
    return json.loads(hit.read_text()) if hit.exists() else None


SCORES = ("f1", "precision", "recall", "dice")


def measure(
    sim, row, seed, model, scores, maps: Path, cd_cache: Path, quick: bool, full: bool, match=False
):
    """Features and F1 of one (row, seed) for a loaded ``model``.

    The tomogram comes from the cross-domain benchmark's cache (made and kept there if
    missing), the F1 from its cached ``scores`` (None if there are none). Only where there is
    no score (or with ``full``) is the tomogram segmented here, as ``cross_domain.score`` does,
    from the probability map kept at ``maps`` (:func:`cross_domain.map_path`), which also
    gives the vesicle statistics of the check. ``match``: the spectrum is matched before
    inference, and the check's TTA runs on the matched crop.
    """
    from analysis.evaluate import evaluate_segmentation, interior_mask
    from analysis.postprocess import segment_vesicles

    tomo, labels, vs = cd.tomogram(sim, row, seed, quick, cd_cache)
    vesicles = None
    if scores is None or full:
        probability = cd.probability_map(model, tomo, vs, maps, match_spectrum=match)
        try:
            segmented = segment_vesicles(probability, tomo, vs)
            vesicles, found = segmented.table, segmented.labels
        except ValueError:  # nothing found at all
            vesicles, found = None, np.zeros_like(labels)
        if scores is None:
            region = interior_mask(labels.shape, vs)
            scores = evaluate_segmentation(
                found, labels, vs, probability=probability, region_mask=region
            )
    scores = {k: float(scores[k]) for k in SCORES}
    started = time.perf_counter()
    features = domain.domain_features(tomo, vs, model, vesicles=vesicles, match_spectrum=match)
    features["seconds_check"] = round(time.perf_counter() - started, 2)
    return {"simulator": sim, "row": row, "seed": seed, **scores, **features}


def cache_key(
    sim: str, row: str, seed: int, path: Path, quick: bool, full: bool, match: bool = False
) -> str:
    """The name of the check's features of (row, seed, network file, spectrum matching): the
    image and network numbers do not depend on the post-processing, the vesicle statistics
    (``full``) do."""
    if full:
        return cd.score_key(sim, row, seed, path, quick, match_spectrum=match)
    return cd.map_key(sim, row, seed, path, quick, match_spectrum=match)


def collect(name, path, cache: Path, cd_cache: Path, options: argparse.Namespace):
    """Features and F1 of every (row, seed), testsim first, calibration seed first; cached.

    ``options``: ``quick``, ``rows``, ``full`` (segment even where the F1 is cached),
    ``scored`` (skip rows the cross-domain benchmark has not scored yet), ``cached`` (only
    rows measured before) and ``match_spectrum`` (scores, maps and the TTA with it).
    """
    cache.mkdir(parents=True, exist_ok=True)
    model = None
    records = []
    jobs = [
        (sim, row, seeds[sim])
        for sim in ("testsim", "generator")
        for seeds in (CALIBRATION_SEEDS, HELD_OUT_SEEDS)
        for row in cd.ROWS[sim]
        if options.rows is None or row in options.rows
    ]
    for sim, row, seed in jobs:
        match = options.match_spectrum
        key = cache_key(sim, row, seed, path, options.quick, options.full, match)
        hit = cache / f"{key}.json"
        record = json.loads(hit.read_text()) if hit.exists() else None
        scores = _cached_score(
            cd_cache, cd.score_key(sim, row, seed, path, options.quick, match_spectrum=match)
        )
        if record is None and (options.cached or (options.scored and scores is None)):
            continue
        if record is None:
            if model is None:
                model = cd.load(path)
            maps = cd.map_path(cd_cache, sim, row, seed, path, options.quick, match_spectrum=match)
            record = measure(
                sim, row, seed, model, scores, maps, cd_cache, options.quick, options.full, match
            )
            hit.write_text(json.dumps(domain._plain(record)))
        elif scores is not None:  # the features are kept; the scores follow the post-processing
            record.update({k: float(scores[k]) for k in SCORES})
        record["network"] = name
        records.append(record)
        print(
            f"{sim:9s} {row:34s} {seed} F1 {record['f1']:.3f} "
            f"spec {record['spectrum_distance']:.2f} tta {record['tta_disagreement']:.3f} "
            f"skew {record['polarity_skew']:+.3f}",
            flush=True,
        )
    return pd.DataFrame.from_records(records)


def fit_threshold(values: np.ndarray, bad: np.ndarray, good: np.ndarray, direction: str):
    """The cut that stays quiet on every good value and catches the most bad ones.

    It lies half way between the most suspicious good value and the next bad one beyond it
    (or just beyond the good ones, if no bad value is). Returns (cut, bad caught).
    """
    sign = 1.0 if direction == "above" else -1.0
    v = sign * np.asarray(values, float)
    ok = np.isfinite(v)
    good_v = v[good & ok]
    edge = good_v.max() if len(good_v) else -np.inf
    beyond = np.sort(v[bad & ok & (v > edge)])
    if len(beyond) and np.isfinite(edge):
        cut = 0.5 * (edge + beyond[0])
    elif np.isfinite(edge):
        cut = edge + 0.05 * abs(edge) + 1e-3
    else:
        cut = beyond[0] - 1e-3 if len(beyond) else np.inf
    return sign * cut, int(len(beyond))


def confusion(table: pd.DataFrame, warn: pd.Series) -> pd.DataFrame:
    """Warned / quiet counts per F1 class."""
    f1_class = pd.cut(
        table["f1"], [-1, BAD, GOOD, 2], right=False, labels=["F1 < 0.9", "0.9-0.95", "F1 >= 0.95"]
    )
    return pd.crosstab(f1_class, warn.map({True: "warn", False: "quiet"})).reindex(
        columns=["warn", "quiet"], fill_value=0
    )


def features_of(record: pd.Series) -> dict:
    """A table row as :func:`domain.domain_features` gave it (without the NaN of columns that
    other rows have)."""
    return {k: v for k, v in record.items() if not (isinstance(v, float) and np.isnan(v))}


def warnings_of(table: pd.DataFrame, thresholds) -> pd.DataFrame:
    """One boolean column per check: does it warn on the row?"""
    out = {}
    for _, record in table.iterrows():
        checks = domain.assess(features_of(record), thresholds)
        out[record.name] = {c.name: c.status == "warn" for c in checks}
    return pd.DataFrame.from_dict(out, orient="index").fillna(False)


def calibrate(table: pd.DataFrame) -> dict:
    """Thresholds of :data:`FITTED` fitted on the calibration seeds (3 significant digits);
    the others as in the package."""
    calib = table["seed"].isin(CALIBRATION_SEEDS.values()).to_numpy()
    bad = (table["f1"] < BAD).to_numpy()
    good = (table["f1"] >= GOOD).to_numpy()
    thresholds = dict(domain.THRESHOLDS)
    print("\nthresholds fitted on the calibration seeds (quiet on every F1 >= 0.95):")
    for key, (feature, side) in {**FITTED, **INFORMATION}.items():
        if feature not in table:
            continue
        values = table[feature].to_numpy(float)
        cut, caught = fit_threshold(values[calib], bad[calib], good[calib], side)
        note = "" if key in FITTED else f" (not used: the package's is {thresholds[key]})"
        if key in FITTED:
            thresholds[key] = float(f"{cut:.3g}")
        print(
            f"  {key:18s} {feature} {side} {cut:.3g}: catches {caught} of {bad[calib].sum()}{note}"
        )
    return thresholds


def leave_one_out(table: pd.DataFrame) -> pd.Series:
    """Does each calibration tomogram warn with the thresholds fitted on the others?"""
    calib = table[table["seed"].isin(CALIBRATION_SEEDS.values())]
    warned = {}
    for i in calib.index:
        rest = calib.drop(index=i)
        bad, good = (rest["f1"] < BAD).to_numpy(), (rest["f1"] >= GOOD).to_numpy()
        thresholds = dict(domain.THRESHOLDS)
        for key, (feature, side) in FITTED.items():
            thresholds[key] = fit_threshold(rest[feature].to_numpy(float), bad, good, side)[0]
        checks = domain.assess(features_of(calib.loc[i]), thresholds)
        warned[i] = any(c.status == "warn" for c in checks)
    return pd.Series(warned)


def report(table: pd.DataFrame, thresholds: dict, label: str) -> None:
    """Confusion tables on the calibration and held-out seeds, and the rows misjudged."""
    print(f"\n=== {label}: warn if any check warns ===")
    for part_name, seeds in (("calibration", CALIBRATION_SEEDS), ("held out", HELD_OUT_SEEDS)):
        part = table[table["seed"].isin(seeds.values())]
        if not len(part):
            continue
        warns = warnings_of(part, thresholds)
        warned = warns.any(axis=1)
        print(f"\n{part_name} seeds {sorted(seeds.values())}: {len(part)} tomograms")
        print(confusion(part, warned).to_string())
        print("warnings per check:", {k: int(v) for k, v in warns.sum().items() if v})
        missed = part[(part["f1"] < BAD) & ~warned]
        false = part[(part["f1"] >= GOOD) & warned]
        for name, rows in (("missed (F1 < 0.9, quiet)", missed), ("false alarms", false)):
            listed = ", ".join(f"{r.simulator}/{r.row} {r.f1:.2f}" for r in rows.itertuples())
            print(f"{name}: {listed or '-'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("reference", "calibrate"))
    parser.add_argument("--network", required=True, metavar="NAME=PATH")
    parser.add_argument("--name", help="reference: its name (default: the network's NAME)")
    parser.add_argument("--rows", nargs="+", help="row names (default: all)")
    parser.add_argument("--quick", action="store_true", help="half-size tomograms")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks/results/domain_check")
    parser.add_argument("--cd-cache", type=Path, default=ROOT / "benchmarks/results/cross_domain")
    parser.add_argument("--full", action="store_true", help="segment also where F1 is cached")
    parser.add_argument(
        "--scored", action="store_true", help="skip rows the cross-domain run has not scored"
    )
    parser.add_argument("--cached", action="store_true", help="only the rows already measured")
    cd.add_match_spectrum_option(
        parser,
        "the network as the package segments with it (auto, default: the spectrum matched where "
        "its varied training spectra are known), always matched (on) or never (off): its F1 "
        "and the check's TTA",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/domain_check.csv")
    args = parser.parse_args(argv)
    name, path = _network(args.network)
    if args.command == "reference":
        make_reference(name, path, args.name)
        return
    try:  # one setting for the network, as predict resolves it
        setting = cd.MATCH_SETTINGS[args.match_spectrum]
        args.match_spectrum = cd.resolve_matching({name: path}, setting)[name]
    except ParameterError as err:
        parser.error(f"{err}: no --match-spectrum")
    table = collect(name, path, args.cache, args.cd_cache, args)
    table.drop(columns=["log_amplitude"]).to_csv(args.out, index=False)
    fitted = calibrate(table)
    loo = leave_one_out(table)
    print("\nleave one out on the calibration seeds (thresholds fitted on the other rows):")
    print(confusion(table.loc[loo.index], loo).to_string())
    report(table, fitted, f"thresholds fitted for {name}")
    report(table, dict(domain.THRESHOLDS), "the package's THRESHOLDS")
    print(f"\nfitted thresholds (for domain.THRESHOLDS): {fitted}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
