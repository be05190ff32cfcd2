"""Synthetic experiments with known effects: groups of generated synapses, and their truth.

A :class:`GroupSpec` sets a group's means of the generator's parameters (vesicles per
synapse, how steeply they crowd towards the active zone, the tethered and connected
fractions of vesicles within reach) and how much synapses vary around them; two specs that
differ in one mean make an experiment with a known effect. :func:`write_study` generates
every synapse (:func:`analysis.synthetic.make_synapse`), writes its files under the
DESIGN.md names and a study table (:mod:`.pooling`) for ``analysis compare``;
:func:`truth_tables` gives the exact per-vesicle and per-filament tables of the phantoms,
in the columns the active-zone analysis writes, so that every measure has its true value.

This module imports :mod:`analysis.synthetic` and :mod:`analysis.active_zone` (beyond what
DESIGN.md lists for ``stats``): the truth is the generator's, counted as the analysis counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from analysis.active_zone import count_per_vesicle
from analysis.io import atomic_output
from analysis.stats.pooling import pool


@dataclass(frozen=True)
class GroupSpec:
    """One group of a synthetic study: means of the generator's parameters, and the spread
    of synapses around them. ``None`` keeps the base geometry's value.

    Attributes
    ----------
    name : str
    n_vesicles : float, optional
        Mean number of vesicles placed per synapse.
    az_decay_nm : float, optional
        Mean decay length of the vesicle density away from the AZ (smaller: more crowded
        at the membrane).
    tether_fraction, connector_fraction : float, optional
        Mean probability that a vesicle within reach (14 nm of the AZ; 12 nm of another
        vesicle) gets a tether (a connector).
    n_vesicles_cv, az_decay_cv : float
        Synapse-to-synapse coefficient of variation (log-normal).
    fraction_logit_sd : float
        Synapse-to-synapse SD of the fractions on the log-odds scale.
    """

    name: str
    n_vesicles: float | None = None
    az_decay_nm: float | None = None
    tether_fraction: float | None = None
    connector_fraction: float | None = None
    n_vesicles_cv: float = 0.2
    az_decay_cv: float = 0.2
    fraction_logit_sd: float = 0.7


def draw_geometries(spec: GroupSpec, n: int, base, *, seed=0) -> list[tuple[object, int, dict]]:
    """``n`` synapses of a group: their geometry, generator seed and drawn parameters.

    Parameters
    ----------
    spec : GroupSpec
    n : int
    base : analysis.synthetic.SynapseGeometry
        Every other parameter (shape, voxel size, …).
    seed : int or sequence of int
        Synapse ``i`` draws from ``(seed, i)``, so adding synapses keeps the first ones.
    """
    out = []
    for i in range(n):
        sequence = np.random.SeedSequence(np.atleast_1d(seed).tolist() + [i])
        rng = np.random.default_rng(sequence)
        drawn = {
            "n_vesicles": int(
                round(
                    _mean(spec.n_vesicles, base.n_vesicles)
                    * np.exp(rng.normal(0, spec.n_vesicles_cv) - spec.n_vesicles_cv**2 / 2)
                )
            ),
            "az_decay_nm": float(
                _mean(spec.az_decay_nm, base.az_decay_nm)
                * np.exp(rng.normal(0, spec.az_decay_cv) - spec.az_decay_cv**2 / 2)
            ),
        }
        for key in ("tether_fraction", "connector_fraction"):
            mean = _mean(getattr(spec, key), getattr(base, key))
            drawn[key] = float(expit(logit(mean) + rng.normal(0, spec.fraction_logit_sd)))
        synapse_seed = int(sequence.generate_state(1)[0] % (2**31 - 3))
        out.append((replace(base, **drawn), synapse_seed, drawn))
    return out


def _mean(value, default):
    return default if value is None else value


def truth_vesicles(vesicles: pd.DataFrame, filaments: pd.DataFrame) -> pd.DataFrame:
    """The phantom's vesicles in the columns of the active-zone analysis.

    ``az_membrane_distance_nm`` is the gap from the vesicle's outer surface to the AZ
    membrane's cytoplasmic face straight below its centre, as the generator places tethers
    (centre height minus radius minus half the membrane); ``n_connectors``,
    ``n_connected_vesicles``, ``n_tethers`` count the phantom's filaments
    (:func:`analysis.active_zone.count_per_vesicle`).

    Parameters
    ----------
    vesicles, filaments : pandas.DataFrame
        ``NAME_vesicles.csv`` and ``NAME_filaments.csv`` of a synthetic synapse.
    """
    out = vesicles[["vesicle_id", "radius_nm", "az_distance_nm"]].copy()
    gap = vesicles["az_distance_nm"] - vesicles["radius_nm"] - vesicles["membrane_thickness_nm"] / 2
    out["az_membrane_distance_nm"] = np.maximum(gap, 0.0)
    counts = count_per_vesicle(filaments, vesicles["vesicle_id"])
    return out.merge(counts, on="vesicle_id", how="left")


def write_study(
    groups: list[GroupSpec],
    n_per_group: int,
    outdir: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    microscope=None,
    progress: bool = False,
) -> pd.DataFrame:
    """Generate a study: ``n_per_group`` synapses for each group, their files and tables.

    A synapse whose files are present and were made from the same parameters by the same
    generator is not made again.

    Parameters
    ----------
    groups : list of GroupSpec
        The first is the reference.
    n_per_group : int
    outdir : path
        Created if missing; gets ``GROUP_NN.mrc`` and the rest of each synapse's files
        (:func:`analysis.synthetic.write_synapse`) and ``study.csv``.
    quick : bool
        Synapses of the quick size (:data:`analysis.synthetic.QUICK_GEOMETRY`).
    seed : int
        Group ``g``'s synapse ``i`` is drawn from ``(seed, g, i)``.
    microscope : analysis.synthetic.Microscope, optional
    progress : bool
        A tqdm bar over the synapses.

    Returns
    -------
    pandas.DataFrame
        The study table (also ``outdir/study.csv``, paths relative to it): ``tomogram,
        group, az_mask, region_mask, true_labels, true_vesicles, true_filaments, seed`` and
        the drawn parameters.
    """
    from analysis import synthetic

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    base = synthetic.SynapseGeometry(**synthetic.QUICK_GEOMETRY) if quick else None
    base = base or synthetic.SynapseGeometry()
    plan = [
        (spec, i, *drawn)
        for g, spec in enumerate(groups)
        for i, drawn in enumerate(draw_geometries(spec, n_per_group, base, seed=(seed, g)))
    ]
    if progress:
        from tqdm.auto import tqdm

        plan = tqdm(plan, desc="synapses", unit="synapse")
    rows = []
    for spec, i, geometry, synapse_seed, drawn in plan:
        name = f"{spec.name}_{i + 1:02d}"
        files = synthetic.synapse_paths(outdir, name)
        stamp = outdir / f".{name}.study.json"
        made = {
            "generator": synthetic.GENERATOR_VERSION,
            "seed": synapse_seed,
            "geometry": {k: v for k, v in asdict(geometry).items() if k != "scene"},
            "microscope": asdict(microscope) if microscope is not None else None,
        }
        made = json.loads(json.dumps(made, default=str))
        current = stamp.exists() and json.loads(stamp.read_text()) == made
        if not (current and all(p.exists() for p in files.values())):
            synapse = synthetic.make_synapse(geometry, microscope, seed=synapse_seed)
            synthetic.write_synapse(synapse, outdir, name)
            with atomic_output(stamp) as tmp:
                tmp.write_text(json.dumps(made))
        rows.append(
            {
                "tomogram": files["tomogram"].name,
                "group": spec.name,
                "az_mask": files["az_mask"].name,
                "region_mask": files["region_mask"].name,
                "true_labels": files["labels"].name,
                "true_vesicles": files["vesicles"].name,
                "true_filaments": files["filaments"].name,
                "seed": synapse_seed,
                **drawn,
            }
        )
    study = pd.DataFrame(rows)
    with atomic_output(outdir / "study.csv") as tmp:
        study.to_csv(tmp, index=False)
    return study


def truth_tables(study: pd.DataFrame, folder: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The exact pooled ``vesicles`` and ``filaments`` tables of a :func:`write_study` study.

    Tomograms are named by their stem (as the analysis's pooled tables name them).
    """
    folder = Path(folder)
    groups, vesicles, filaments = {}, {}, {}
    for row in study.itertuples():
        stem = Path(row.tomogram).name.removesuffix(".mrc")
        groups[stem] = row.group
        true_filaments = pd.read_csv(folder / row.true_filaments)
        vesicles[stem] = truth_vesicles(pd.read_csv(folder / row.true_vesicles), true_filaments)
        filaments[stem] = true_filaments
    return {"vesicles": pool(vesicles, groups), "filaments": pool(filaments, groups)}


def phantom_tables(
    groups: list[GroupSpec], n_per_group: int, *, quick: bool = False, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """The exact pooled ``vesicles`` and ``filaments`` tables of a study's phantoms, without
    imaging them (a second or two per synapse): the same synapses as :func:`write_study` with
    the same arguments would make, for calibrating :class:`analysis.stats.SynapseModel`."""
    from analysis import synthetic

    base = synthetic.SynapseGeometry(**synthetic.QUICK_GEOMETRY) if quick else None
    base = base or synthetic.SynapseGeometry()
    names, vesicles, filaments = {}, {}, {}
    for g, spec in enumerate(groups):
        for i, (geometry, synapse_seed, _) in enumerate(
            draw_geometries(spec, n_per_group, base, seed=(seed, g))
        ):
            phantom = synthetic.make_phantom(geometry, seed=synapse_seed)
            name = f"{spec.name}_{i + 1:02d}"
            names[name] = spec.name
            vesicles[name] = truth_vesicles(phantom.vesicles, phantom.filaments)
            filaments[name] = phantom.filaments
    return {"vesicles": pool(vesicles, names), "filaments": pool(filaments, names)}
