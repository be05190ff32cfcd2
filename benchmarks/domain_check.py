"""Calibrate the domain check (:mod:`analysis.inference.domain`) on the cross-domain benchmark.

Two commands:

``reference --network NAME=PATH``
    The reference of a network's training data: for each training tomogram recorded in the
    checkpoint (``data["train"]``: the cached sample set and varied set are found by name), the
    image numbers of the check (spectrum, polarity, wedge), stored under NAME in the package's
    ``src/analysis/inference/domain_reference.json``.
``calibrate --network NAME=PATH``
    For every row of ``benchmarks/cross_domain.py`` (both simulators) and both of its seeds,
    the tomogram is made again with the benchmark's own functions, segmented by the network
    and measured by the check; its F1 is the benchmark's cached score where there is one
    (``--cd-cache``), else computed here the same way. Thresholds are then fitted on the
    calibration seeds (testsim 9101, generator 40001) so that the warning fires where
    F1 < 0.9 and stays quiet where F1 ≥ 0.95, and the confusion table is reported on the
    held-out seeds (9102, 40002). Features are cached per (row, seed, network file, simulator
    version) in ``--cache``.

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

from analysis.inference import domain, predict  # noqa: E402
from analysis.io import read_tomogram  # noqa: E402
from analysis.normalise import DEFAULT_NORMALISATION, centre_and_scale  # noqa: E402

REFERENCE_JSON = ROOT / "src/analysis/inference" / domain.REFERENCE_FILE
CALIBRATION_SEEDS = {"testsim": 9101, "generator": 40001}
HELD_OUT_SEEDS = {"testsim": 9102, "generator": 40002}
#: F1 below BAD must warn, at or above GOOD must stay quiet; between, either is fine.
BAD, GOOD = 0.9, 0.95
#: Checks whose thresholds are fitted, with the direction in which a value is suspicious.
FITTED = {
    "spectrum_distance": "above",
    "tta_disagreement": "above",
    "ambiguous": "above",
    "shell_contrast": "below",
    "radius_in_range": "below",
    "kept_fraction": "below",
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
    crop = domain.network_crop(tomogram, voxel_size_nm, meta["voxel_size_nm"])
    return domain.image_features((crop - centre) / scale, meta["voxel_size_nm"])


def make_reference(name: str, path: Path, label: str | None = None) -> None:
    from analysis.model import load_model

    _, meta = load_model(path, "cpu")
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


def measure(sim, row, seed, model, key, cd_cache: Path, quick: bool, keep: Path | None) -> dict:
    """Features and F1 of one (row, seed) for a loaded ``model``; with ``keep``, the
    tomogram (float16) and vesicle table are kept there too, to study other features."""
    from analysis.evaluate import evaluate_segmentation
    from analysis.postprocess import segment_vesicles

    tomo, labels, vs = cd.MAKERS[sim](row, seed, quick)
    started = time.perf_counter()
    probability = predict(tomo, vs, model)
    try:
        segmented = segment_vesicles(probability, tomo, vs)
        vesicles, found = segmented.table, segmented.labels
    except ValueError:  # nothing found at all
        vesicles, found = None, np.zeros_like(labels)
    scores = _cached_score(cd_cache, key)
    if scores is None:  # as cross_domain.score does, from the same probability map
        scores = evaluate_segmentation(
            found, labels, vs, probability=probability, region_mask=cd.interior(labels.shape, vs)
        )
        scores = {k: float(scores[k]) for k in ("f1", "precision", "recall", "dice")}
    seconds = time.perf_counter() - started
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        np.save(keep / f"{key}.npy", tomo.astype(np.float16))
        if vesicles is not None:
            vesicles.to_csv(keep / f"{key}.csv", index=False)
    features = domain.domain_features(tomo, vs, model, vesicles=vesicles)
    if vesicles is None:
        features.update(n_vesicles=0.0, radius_in_range=0.0, shell_contrast=np.nan)
    features["seconds_check"] = round(time.perf_counter() - started - seconds, 2)
    features["seconds_segment"] = round(seconds, 2)
    return {"simulator": sim, "row": row, "seed": seed, **scores, **features}


def cache_key(sim: str, row: str, seed: int, path: Path, quick: bool) -> str:
    """The cross-domain benchmark's name for the scores of (row, seed, network file)."""
    quick_tag = "_quick" if quick else ""
    return f"{sim}_{row}_{seed}_{cd.digest(path)}_v{cd.VERSIONS[sim]}{quick_tag}"


def collect(name, path, cache: Path, cd_cache: Path, quick: bool, rows=None, keep=None):
    """Features and F1 of every (row, seed), calibration seeds first; cached."""
    cache.mkdir(parents=True, exist_ok=True)
    model = None
    records = []
    jobs = [
        (sim, row, seeds[sim])
        for seeds in (CALIBRATION_SEEDS, HELD_OUT_SEEDS)
        for sim in ("testsim", "generator")
        for row in cd.ROWS[sim]
        if rows is None or row in rows
    ]
    for sim, row, seed in jobs:
        key = cache_key(sim, row, seed, path, quick)
        hit = cache / f"{key}.json"
        record = json.loads(hit.read_text()) if hit.exists() else None
        if record is None:
            if model is None:
                model = cd.load(path)
            record = measure(sim, row, seed, model, key, cd_cache, quick, keep)
            hit.write_text(json.dumps(domain._plain(record)))
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


def warnings_of(table: pd.DataFrame, thresholds) -> pd.DataFrame:
    """One boolean column per check: does it warn on the row?"""
    out = {}
    for _, record in table.iterrows():
        checks = domain.assess(record.to_dict(), thresholds)
        out[record.name] = {c.name: c.status == "warn" for c in checks}
    return pd.DataFrame.from_dict(out, orient="index").fillna(False)


def calibrate(table: pd.DataFrame) -> dict:
    """Fit the thresholds of :data:`FITTED` on the calibration seeds; print the tables."""
    calib = table["seed"].isin(CALIBRATION_SEEDS.values())
    bad = (table["f1"] < BAD).to_numpy()
    good = (table["f1"] >= GOOD).to_numpy()
    fitted = {}
    print("\nthresholds fitted on the calibration seeds (quiet on every F1 >= 0.95):")
    for feature, direction in FITTED.items():
        if feature not in table:
            continue
        values = table[feature].to_numpy(float)
        cut, caught = fit_threshold(values[calib], bad[calib], good[calib], direction)
        fitted[feature] = cut
        print(f"  {feature:18s} warn {direction} {cut:.4g}: catches {caught} of {bad[calib].sum()}")
    return fitted


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("reference", "calibrate"))
    parser.add_argument("--network", required=True, metavar="NAME=PATH")
    parser.add_argument("--name", help="reference: its name (default: the network's NAME)")
    parser.add_argument("--rows", nargs="+", help="row names (default: all)")
    parser.add_argument("--quick", action="store_true", help="half-size tomograms")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks/results/domain_check")
    parser.add_argument("--cd-cache", type=Path, default=ROOT / "benchmarks/results/cross_domain")
    parser.add_argument("--keep", type=Path, help="also keep tomograms and tables here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/domain_check.csv")
    args = parser.parse_args(argv)
    name, path = _network(args.network)
    if args.command == "reference":
        make_reference(name, path, args.name)
        return
    table = collect(name, path, args.cache, args.cd_cache, args.quick, args.rows, args.keep)
    table.drop(columns=["log_amplitude"]).to_csv(args.out, index=False)
    fitted = calibrate(table)
    thresholds = dict(domain.THRESHOLDS)
    print("\nconfusion with the package's THRESHOLDS (any check warns):")
    for label, seeds in (("calibration", CALIBRATION_SEEDS), ("held out", HELD_OUT_SEEDS)):
        part = table[table["seed"].isin(seeds.values())]
        if not len(part):
            continue
        warns = warnings_of(part, thresholds)
        print(f"\n{label} seeds {sorted(seeds.values())}: {len(part)} tomograms")
        print(confusion(part, warns.any(axis=1)).to_string())
        print("warnings per check:", warns.sum().to_dict())
    print(f"\nfitted (compare with THRESHOLDS): {fitted}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
