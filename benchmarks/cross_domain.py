"""Does a network hold on tomograms it has not seen the physics of? The cross-domain matrix.

Rows are single-factor and combined shifts of a nominal tomogram (tilt range, defocus, noise,
voxel size, reconstruction and post-filters, byte storage, cytoplasm, distractors, gold), made
by two simulators:

* ``testsim`` — :mod:`analysis.testsim`, an independent simulator (its own density model,
  Fourier-slice projector, 2-D astigmatic CTF, Poisson noise) that no network here was trained
  on: its rows measure generalisation;
* ``generator`` — the project's generator (:mod:`analysis.synthetic`, v3 specimen and imaging
  with one thing changed, 96 × 192 × 192 voxels at 2.2 nm, 67 vesicles). Its physics is what
  the package's networks were trained on, so its rows are self-referential: they show
  interpolation inside one renderer, not generalisation.

Columns are networks, all run through the same pipeline (rescaling, tiled inference,
post-processing): by default the first shipped network (trained on the v3 generator only),
the one shipped before the current one (the mean of three fine-tunings, two of them on varied
v2; both taken from git history),
the shipped one, and CryoVesNet's published network (trained on real synaptosomes) where
``../shared/cryovesnet/weights.h5`` exists. Scores are against the exact
truth: final-label Dice, and vesicle precision, recall and F1, pooled over the seeds of a row
(two per row, 40001–40002 for the generator, 9101–9102 for testsim: never used in training),
ignoring the vesicles centred within 10 nm of a face (:data:`analysis.evaluate.BORDER_NM`).

Each network runs as the package runs it by default (``--match-spectrum auto``: the
tomogram's spectrum matched to the training data's where the network's varied training
spectra are known, the shipped network's; ``on`` or ``off`` for every column).
Probability maps are cached per (row, seed, network file, simulator version, test-time
augmentation, spectrum matching and its version) in ``--cache`` (``maps/``, float16), and scores per the same and the
post-processing defaults, so a run with a new network computes only its column, and a change
of the defaults only re-segments. Run:

    .venv/bin/python benchmarks/cross_domain.py
    .venv/bin/python benchmarks/cross_domain.py --network candidate=data/cache/x.pt --quick
    .venv/bin/python benchmarks/cross_domain.py --postprocess min_profile_correlation=0.3
    .venv/bin/python benchmarks/cross_domain.py --tta flips   # every column under four xy flips
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import testsim
from analysis.errors import ParameterError
from analysis.evaluate import evaluate_segmentation, interior_mask
from analysis.inference import predict, spectrum
from analysis.io.atomic import atomic_output
from analysis.models import Predictor
from analysis.models.keras import sha256
from analysis.postprocess import segment_vesicles
from analysis.synthetic import GENERATOR_VERSION, SynapseGeometry, make_synapse
from analysis.synthetic.imaging import Microscope
from analysis.synthetic.scene import Scene

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT.parent / "shared" / "cryovesnet" / "weights.h5"
#: the last commit whose shipped network was trained on the v3 generator alone
FIRST_NETWORK_COMMIT = "779b3ca"
#: the commit of the network shipped before the current one (SHA-256 2157abbc…: the mean of
#: the second shipped network and two fine-tunings of it on varied v2)
PREVIOUS_NETWORK_COMMIT = "0bccb12"
SEEDS = {"generator": (40001, 40002), "testsim": (9101, 9102)}
NOMINAL_SHAPE = (96, 192, 192)
_DENSE = Scene(field_amplitude=0.2, field_correlation_nm=15.0, field_exponent=2.0, n_actin=15)
_DISTRACT = Scene(n_dense_core=2, n_coated=2, n_endosomes=1, n_er_tubules=2, cristae=True)

#: Generator rows: name -> (description, geometry overrides, microscope overrides).
GENERATOR_SHIFTS = {
    "nominal": ("nominal: ±60° in 2°, defocus −8 µm, SNR 0.5, 2.2 nm", {}, {}),
    "tilt50": ("tilt ±50°", {}, {"tilt_min_deg": -50.0, "tilt_max_deg": 50.0}),
    "tilt40": ("tilt ±40°", {}, {"tilt_min_deg": -40.0, "tilt_max_deg": 40.0}),
    "tilt_asym": ("asymmetric tilt −45/+60°", {}, {"tilt_min_deg": -45.0}),
    "defocus3": ("defocus −3 µm", {}, {"defocus_um": -3.0}),
    "defocus5": ("defocus −5 µm", {}, {"defocus_um": -5.0}),
    "defocus12": ("defocus −12 µm", {}, {"defocus_um": -12.0}),
    "snr0p15": ("SNR 0.15 per image", {}, {"snr": 0.15}),
    "snr2": ("SNR 2 per image", {}, {"snr": 2.0}),
    "voxel1p4": ("voxel 1.4 nm", {"voxel_size_nm": 1.4}, {}),
    "voxel3p0": ("voxel 3.0 nm", {"voxel_size_nm": 3.0}, {}),
    "sirt": ("SIRT-like filter", {}, {"recon_filter": "sirt"}),
    "gaussian": ("Gaussian post-filter, σ 1 voxel", {}, {"post_filter": "gaussian"}),
    "nad": ("NAD post-filter", {}, {"post_filter": "nad"}),
    "byte": ("8-bit quantisation", {}, {"quantise_bits": 8}),
    # residual alignment errors as the independent simulator's row has them, and twice as large
    # (vesicle contrast 0.33 SD on seeds 40001-40002, near that row's 0.28: vesicle_contrast.py)
    "misaligned": (
        "alignment errors 2 nm, 0.5°",
        {},
        {"shift_error_nm": 2.0, "tilt_error_deg": 0.5},
    ),
    "misaligned4": (
        "alignment errors 4 nm, 1°",
        {},
        {"shift_error_nm": 4.0, "tilt_error_deg": 1.0},
    ),
    "dense": (
        "dense cytoplasm",
        {"scene": _DENSE, "crowder_density_per_um3": 3e5, "crowder_sigma_nm": 4.0},
        {},
    ),
    "distractors": ("organelles", {"scene": _DISTRACT}, {}),
    "gold": ("10 nm gold beads", {"scene": Scene(n_gold=8)}, {}),
    "combined_tilt50_defocus5_nad": (
        "±50°, defocus −5 µm, NAD",
        {},
        {"tilt_min_deg": -50.0, "tilt_max_deg": 50.0, "defocus_um": -5.0, "post_filter": "nad"},
    ),
    "combined_dense_snr0p2_voxel1p6": (
        "dense cytoplasm, organelles, SNR 0.2, voxel 1.6 nm",
        {
            "scene": dataclasses.replace(_DENSE, n_dense_core=2, n_endosomes=1, n_gold=4),
            "crowder_density_per_um3": 3e5,
            "crowder_sigma_nm": 4.0,
            "voxel_size_nm": 1.6,
        },
        {"snr": 0.2},
    ),
}


def generator_tomogram(name: str, seed: int, quick: bool = False):
    """(tomogram, truth labels, voxel size) of generator row ``name``."""
    _, geo, mic = GENERATOR_SHIFTS[name]
    vs = geo.get("voxel_size_nm", 2.2)
    shape = (48, 96, 96) if quick else NOMINAL_SHAPE
    shape = tuple(int(round(n * 2.2 / vs)) for n in shape)
    n_sv = int(round(160 * np.prod(shape) * (vs / 2.2) ** 3 / (128 * 256 * 256)))
    geometry = SynapseGeometry(**{"shape": shape, "n_vesicles": n_sv, **geo})
    synapse = make_synapse(geometry, Microscope(**mic), seed=seed)
    return synapse.tomogram, synapse.phantom.labels, vs


def testsim_tomogram(name: str, seed: int, quick: bool = False):
    """(tomogram, truth labels, voxel size) of testsim row ``name``."""
    params = testsim.shift_params(name)
    if quick:
        params = dataclasses.replace(params, shape=tuple(max(16, n // 2) for n in params.shape))
    result = testsim.make_tomogram(params, seed)
    return result.tomogram, result.labels, result.voxel_size_nm


ROWS = {"generator": GENERATOR_SHIFTS, "testsim": testsim.SHIFTS}
MAKERS = {"generator": generator_tomogram, "testsim": testsim_tomogram}
VERSIONS = {"generator": GENERATOR_VERSION, "testsim": testsim.TESTSIM_VERSION}


def score(probability, tomogram, labels, voxel_size_nm, postprocess=None) -> dict:
    """Segment ``tomogram`` from its ``probability`` map with the post-processing defaults (or
    ``postprocess``, keyword arguments of :func:`segment_vesicles` that replace them) and score
    it against ``labels`` away from the faces (:data:`analysis.evaluate.BORDER_NM`)."""
    failure = ""
    try:
        found = segment_vesicles(probability, tomogram, voxel_size_nm, **(postprocess or {})).labels
    except ValueError as err:  # a map with nothing (or everything) above threshold
        if isinstance(err, np.linalg.LinAlgError):
            raise
        found, failure = np.zeros_like(labels), str(err)
    scores = evaluate_segmentation(
        found,
        labels,
        voxel_size_nm,
        probability=probability,
        region_mask=interior_mask(labels.shape, voxel_size_nm),
    )
    keys = ("dice", "mask_dice", "precision", "recall", "f1", "n_true", "n_pred", "n_matched")
    return {**{k: float(scores[k]) for k in keys}, "failure": failure}


def postprocess_key(postprocess=None) -> str:
    """A digest of the post-processing settings: :func:`segment_vesicles`' defaults, replaced
    by ``postprocess`` where given. Scores cached under other settings are not reused (the
    probability maps are)."""
    skip = ("memory_limit_bytes", "scratch_dir")
    settings = {
        name: p.default
        for name, p in inspect.signature(segment_vesicles).parameters.items()
        if p.default is not inspect.Parameter.empty and name not in skip
    }
    # a setting given equal to its default (0 for 0.0) is the default: same scores, same key
    given = {k: v for k, v in (postprocess or {}).items() if k not in settings or v != settings[k]}
    text = json.dumps({**settings, **given}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


#: Where the table goes (``cross_domain_ms.csv`` beside it with ``--match-spectrum on``,
#: ``cross_domain_plain.csv`` with ``off``).
DEFAULT_OUT = ROOT / "benchmarks/results/cross_domain.csv"


def map_key(
    sim: str,
    row: str,
    seed: int,
    path: Path,
    quick: bool,
    tta: str = "none",
    match_spectrum: bool = False,
) -> str:
    """The name of (row, seed, network file, test-time augmentation, spectrum matching) in
    the cache: its probability map's file name."""
    key = f"{sim}_{row}_{seed}_{digest(path)}_v{VERSIONS[sim]}" + ("_quick" if quick else "")
    matched = f"_ms{spectrum.MATCH_VERSION}" if match_spectrum else ""
    return key + ("" if tta == "none" else f"_tta{tta}") + matched


def map_path(cache: Path, *key, **variant) -> Path:
    """Where :func:`probability_map` keeps the map of (row, seed, network file) in ``cache``
    (``key`` and ``variant``: the arguments of :func:`map_key`)."""
    return cache / "maps" / f"{map_key(*key, **variant)}.npy"


def score_key(
    sim: str, row: str, seed: int, path: Path, quick: bool, postprocess=None, **variant
) -> str:
    """The name of the cached scores of (row, seed, network file) under today's defaults (or
    ``postprocess``); ``variant``: ``tta`` and ``match_spectrum`` of :func:`map_key`."""
    return f"{map_key(sim, row, seed, path, quick, **variant)}_pp{postprocess_key(postprocess)}"


def probability_map(
    model, tomogram, voxel_size_nm, path: Path, match_spectrum: bool = False
) -> np.ndarray:
    """The network's map of ``tomogram``, kept in ``path`` as float16 (predicted if missing).

    The map is rounded to float16 also when it was just predicted, so that a first run and a
    rerun from the cache give the same scores.
    """
    if path.exists():
        return np.load(path).astype(np.float32)
    kept = predict(tomogram, voxel_size_nm, model, match_spectrum=match_spectrum)
    kept = kept.astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, kept)
    return kept.astype(np.float32)


def shipped_network_at(commit: str, cache: Path) -> Path:
    """The network shipped at ``commit``, extracted from git history (kept in ``cache``)."""
    out = cache / f"sv_unet3d_{commit}.pt"
    if not out.exists():
        blob = subprocess.run(
            ["git", "show", f"{commit}:src/analysis/weights/sv_unet3d.pt"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)
    return out


def load(path: Path, tta: str = "none") -> Predictor:
    """The predictor of a checkpoint or a Keras .h5 (converted once, cached)."""
    return Predictor.load(path, tta=tta)


def digest(path: Path) -> str:
    return sha256(path)[:12]


def tomogram(sim: str, row: str, seed: int, quick: bool, cache: Path):
    """(tomogram, labels, voxel size) of a row and seed, made once and kept in ``cache``."""
    path = cache / "tomograms" / f"{sim}_{row}_{seed}_v{VERSIONS[sim]}{'_quick' * quick}.npz"
    if path.exists():
        with np.load(path) as kept:
            return kept["tomogram"], kept["labels"], float(kept["voxel_size_nm"])
    tomo, labels, vs = MAKERS[sim](row, seed, quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, tomogram=tomo, labels=labels.astype(np.int32), voxel_size_nm=vs)
    partial.replace(path)
    return tomo, labels, vs


def resolve_matching(networks: dict[str, Path], setting: bool | str) -> dict[str, bool]:
    """Whether each network's tomograms are spectrum-matched under ``setting`` (True, False
    or "auto", as :func:`analysis.inference.predict` takes it).

    Raises
    ------
    ParameterError
        Naming the networks without training spectra, for ``setting=True``.
    """
    if isinstance(setting, bool):
        if setting:
            unknown = []
            for name, path in networks.items():
                try:
                    spectrum.reference_envelope(load(path).checkpoint)
                except ParameterError:
                    unknown.append(name)
            if unknown:
                raise ParameterError(f"no training spectra recorded for {', '.join(unknown)}")
        return dict.fromkeys(networks, setting)
    return {
        name: spectrum.matching_envelope(load(path).checkpoint, setting) is not None
        for name, path in networks.items()
    }


#: ``--match-spectrum`` of the benchmarks -> ``match_spectrum`` of :func:`analysis.inference.predict`.
MATCH_SETTINGS = {"off": False, "on": True, "auto": "auto"}


def add_match_spectrum_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--match-spectrum [off|on|auto]`` (alone: on; absent: auto, as the package)."""
    parser.add_argument(
        "--match-spectrum",
        nargs="?",
        choices=tuple(MATCH_SETTINGS),
        const="on",
        default="auto",
        help=help,
    )


def run(
    networks: dict[str, Path],
    simulators,
    rows,
    quick: bool,
    cache: Path,
    seeds=None,
    postprocess: dict | None = None,
    tta: str = "none",
    match_spectrum: bool | str | dict[str, bool] = False,
) -> pd.DataFrame:
    """Score every network on every row and seed (``seeds``, default :data:`SEEDS` of each
    simulator) with the post-processing defaults or ``postprocess``, test-time augmentation
    ``tta`` and spectrum matching ``match_spectrum`` (as :func:`analysis.inference.predict`
    takes it, or per network: :func:`resolve_matching`); cached scores and maps are reused."""
    cache.mkdir(parents=True, exist_ok=True)
    if not isinstance(match_spectrum, dict):
        match_spectrum = resolve_matching(networks, match_spectrum)
    loaded = {}
    records = []
    for sim in simulators:
        for row in rows or ROWS[sim]:
            if row not in ROWS[sim]:
                continue
            for seed in seeds or SEEDS[sim]:
                tomo = None
                for name, path in networks.items():
                    variant = {"tta": tta, "match_spectrum": match_spectrum[name]}
                    key = score_key(sim, row, seed, path, quick, postprocess, **variant)
                    hit = cache / f"{key}.json"
                    if hit.exists():
                        result = json.loads(hit.read_text())
                    else:
                        if tomo is None:
                            tomo, labels, vs = tomogram(sim, row, seed, quick, cache)
                        if name not in loaded:
                            loaded[name] = load(path, tta)
                        started = time.perf_counter()
                        maps = map_path(cache, sim, row, seed, path, quick, **variant)
                        probability = probability_map(
                            loaded[name], tomo, vs, maps, match_spectrum[name]
                        )
                        result = score(probability, tomo, labels, vs, postprocess)
                        result["seconds"] = round(time.perf_counter() - started, 1)
                        hit.write_text(json.dumps(result))
                    records.append(
                        {"simulator": sim, "row": row, "seed": seed, "network": name, **result}
                    )
                    print(
                        f"{sim:9s} {row:32s} {seed} {name:12s} "
                        f"F1 {result['f1']:.3f} Dice {result['dice']:.3f}",
                        flush=True,
                    )
    return pd.DataFrame.from_records(records)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Pooled scores per (simulator, row, network): detections summed over seeds, Dice and
    the probability map's soft Dice (``mask_dice``) their means."""
    grouped = table.groupby(["simulator", "row", "network"], sort=False)
    out = grouped[["n_true", "n_pred", "n_matched"]].sum()
    out["precision"] = out["n_matched"] / out["n_pred"].clip(lower=1)
    out["recall"] = out["n_matched"] / out["n_true"].clip(lower=1)
    out["f1"] = 2 * out["n_matched"] / (out["n_true"] + out["n_pred"]).clip(lower=1)
    out["dice"] = grouped["dice"].mean()
    out["mask_dice"] = grouped["mask_dice"].mean()
    out = out.reset_index()
    out.insert(
        2, "description", [ROWS[s][r][0] for s, r in zip(out.simulator, out.row, strict=True)]
    )
    return out


def parse_value(text: str):
    """A ``--postprocess`` value: JSON (numbers, null, true) or else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a column (repeat); default: first, previous, shipped and published networks",
    )
    parser.add_argument("--simulator", nargs="+", default=["testsim", "generator"])
    parser.add_argument("--rows", nargs="+", help="row names (default: all)")
    parser.add_argument("--quick", action="store_true", help="half-size tomograms")
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="other seeds (e.g. fresh ones for a final check)"
    )
    parser.add_argument(
        "--postprocess",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of segment_vesicles instead of its default (repeat; JSON values), "
        "e.g. min_profile_correlation=0.3",
    )
    parser.add_argument(
        "--tta",
        choices=("none", "flips"),
        default="none",
        help="test-time augmentation of every column (flips: the mean over four xy flips)",
    )
    add_match_spectrum_option(
        parser,
        "match each tomogram's amplitude spectrum to the network's training data first: "
        "auto (default, as the package segments: where a network's varied training spectra "
        "are known), on (every column; refused without training spectra) or off",
    )
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks/results/cross_domain")
    parser.add_argument(
        "--out",
        type=Path,
        help="default: benchmarks/results/cross_domain.csv (_ms with --match-spectrum on, "
        "_plain with off)",
    )
    args = parser.parse_args(argv)
    # a mistyped row would otherwise be skipped in silence, and its column look complete
    unknown = [r for r in args.rows or () if not any(r in ROWS.get(s, ()) for s in args.simulator)]
    if unknown:
        parser.error(f"no row {', '.join(unknown)} in {' or '.join(args.simulator)}")
    postprocess = {k: parse_value(v) for k, v in (p.split("=", 1) for p in args.postprocess)}
    cache = args.cache
    if args.network:
        networks = {k: Path(v) for k, v in (n.split("=", 1) for n in args.network)}
    else:
        networks = {
            "first": shipped_network_at(FIRST_NETWORK_COMMIT, cache),
            "previous": shipped_network_at(PREVIOUS_NETWORK_COMMIT, cache),
            "shipped": ROOT / "src/analysis/weights/sv_unet3d.pt",
        }
        if PUBLISHED.exists():
            networks["published"] = PUBLISHED
    setting = MATCH_SETTINGS[args.match_spectrum]
    try:  # "on" needs every column's training spectra: refused before any work
        matching = resolve_matching(networks, setting)
    except ParameterError as err:
        parser.error(f"{err}: no --match-spectrum")
    if args.out is None:  # the default (auto) table, and the others beside it
        suffix = {"auto": "", "on": "_ms", "off": "_plain"}[args.match_spectrum]
        args.out = DEFAULT_OUT.with_name(f"cross_domain{suffix}.csv")
    table = run(
        networks,
        args.simulator,
        args.rows,
        args.quick,
        cache,
        args.seeds,
        postprocess,
        args.tta,
        matching,
    )
    summary = summarise(table)
    # which file each column is, so that a table shipped with weights can be checked against them
    summary["network_sha256"] = summary["network"].map({k: digest(v) for k, v in networks.items()})
    summary["match_spectrum"] = summary["network"].map(matching)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out, index=False)
    pd.set_option("display.width", 200)
    for metric in ("f1", "dice"):
        print(f"\n{metric} (pooled over seeds)")
        print(
            summary.pivot_table(
                index=["simulator", "row"], columns="network", values=metric, sort=False
            )
            .round(3)
            .to_string()
        )
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
