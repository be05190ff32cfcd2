"""The whole comparison of two groups from pooled tables: what ``analysis compare`` writes.

:func:`compare_study` turns the pooled vesicle, filament and layer tables (:mod:`.pooling`)
into the per-synapse measures and the tests of :mod:`.comparisons`; :func:`write_report`
writes them as CSV files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from analysis.active_zone import DEFAULT_BINS_NM
from analysis.io import atomic_outputs
from analysis.stats import comparisons
from analysis.stats.measures import (
    MEASURES,
    layer_density,
    proximal,
    synapse_bins,
    synapse_measures,
)

#: File names of :func:`write_report`, by table.
REPORT_FILES = {
    "pooled_vesicles": "pooled_vesicles.csv",
    "pooled_filaments": "pooled_filaments.csv",
    "pooled_layers": "pooled_layers.csv",
    "per_synapse": "per_synapse.csv",
    "per_synapse_bins": "per_synapse_bins.csv",
    "per_synapse_density": "per_synapse_density.csv",
    "statistics": "statistics.csv",
    "bins": "statistics_by_bin.csv",
}
STATISTICS_COLUMNS = [
    "measure",
    "test",
    "group_a",
    "group_b",
    "n_a",
    "n_b",
    "value_a",
    "value_b",
    "effect",
    "ci_low",
    "ci_high",
    "p",
    "unit",
    "role",
]
#: What each test is for, as measured by ``benchmarks/group_statistics.py`` (1000 null and
#: 1000 effect experiments of 6 + 6 synapses per scenario, seed 31000):
#: ``recommended`` tests keep their 5 % (3.1-5.5 %) and their intervals cover the true
#: effect 93-97 % of the time. The mixed model is conservative where synapses do not differ
#: at all (1.3 %: their variance at the boundary, 0, and t on synapses - 2 df), so it is an
#: alternative; the pooled χ² is not valid here (11-24 %).
TEST_ROLES = {
    "welch": "recommended",
    "permutation": "recommended",
    "glm": "recommended",
    "bootstrap": "recommended",
    "mixed": "alternative",
    "chi2": "comparison only",
}
#: Per-vesicle columns behind the per-synapse measures, for the bootstrap.
_ROWS = {
    "tethered": "tethered",
    "connected": "connected",
    "tethers_per_vesicle": "n_tethers",
    "connectors_per_vesicle": "n_connectors",
}


def compare_study(
    vesicles: pd.DataFrame,
    filaments: pd.DataFrame | None = None,
    layers: pd.DataFrame | None = None,
    *,
    bins_nm=DEFAULT_BINS_NM,
    method: str = "holm",
    n_boot: int = 2000,
    n_permutations: int = 9999,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Per-synapse measures of two groups and their tests (the synapse is the unit).

    Parameters
    ----------
    vesicles, filaments, layers : pandas.DataFrame
        Pooled tables with ``group`` and ``tomogram``; the first group is the reference.
    bins_nm : sequence of float
        Distance bins of the per-bin comparisons.
    method : str
        Multiple-comparison control over the bins (``holm`` or ``fdr_bh``).
    n_boot, n_permutations, seed : int

    Returns
    -------
    dict of str to pandas.DataFrame
        ``per_synapse`` (:func:`synapse_measures`), ``per_synapse_bins``,
        ``per_synapse_density`` (when layers are given), ``statistics`` (one row per
        measure and test, :data:`STATISTICS_COLUMNS`; ``test`` is ``welch``,
        ``permutation``, ``bootstrap``, ``glm`` (log odds ratio), ``mixed`` or ``chi2``,
        the last pooling vesicles as if independent; ``role`` from :data:`TEST_ROLES`) and
        ``bins`` (per bin and measure, adjusted over the bins).
    """
    groups = comparisons.group_order(vesicles)
    per_synapse = synapse_measures(vesicles, filaments)
    rows = []
    for measure in MEASURES:
        r = comparisons.synapse_test(
            per_synapse, measure, groups=groups, n_permutations=n_permutations, seed=seed
        )
        rows.append(_row(r, "welch", r["p_welch"], "synapse"))
        rows.append(_row(r, "permutation", r["p_permutation"], "synapse", interval=False))
    near = vesicles[proximal(vesicles)].assign(
        tethered=lambda t: t["n_tethers"] > 0, connected=lambda t: t["n_connectors"] > 0
    )
    for measure, column in _ROWS.items():
        r = comparisons.hierarchical_bootstrap(
            near, column, groups=groups, n_boot=n_boot, seed=seed
        )
        r["measure"] = measure
        rows.append(_row(r, "bootstrap", r["p_boot"], "synapse, then vesicle"))
    for measure in ("tethered", "connected"):
        r = comparisons.cluster_glm(near, measure, groups=groups)
        rows.append(
            _row(r, "glm", r["p_glm"], "vesicle, clustered by synapse", values="proportion")
        )
        r = comparisons.pooled_chi2(near, measure, groups=groups)
        rows.append(
            _row(r, "chi2", r["p_chi2"], "vesicle, pooled (ignores the synapse)", "proportion")
        )
    if filaments is not None and len(filaments):
        for kind in ("connector", "tether"):
            part = filaments[filaments["kind"] == kind]
            if part["tomogram"].nunique() >= 3 and part["group"].nunique() == 2:
                r = comparisons.mixed_model(part, "length_nm", groups=groups)
                r["measure"] = f"{kind}_length_nm"
                rows.append(_row(r, "mixed", r["p_mixed"], "filament, synapse random effect"))
    statistics = pd.DataFrame(rows, columns=STATISTICS_COLUMNS)
    per_bin = synapse_bins(vesicles[vesicles["az_membrane_distance_nm"] < bins_nm[-1]], bins_nm)
    bins = [
        comparisons.compare_bins(per_bin, m, method=method, groups=groups).assign(measure=m)
        for m in ("n_vesicles", "tethered", "connected")
    ]
    out = {"per_synapse": per_synapse, "per_synapse_bins": per_bin, "statistics": statistics}
    if layers is not None:
        density = layer_density(layers)
        out["per_synapse_density"] = density
        bins.append(
            comparisons.compare_bins(density, "volume_fraction", method=method, groups=groups)
        )
    out["bins"] = pd.concat(bins, ignore_index=True)
    return out


def _row(result, test, p, unit, values="mean", interval=True) -> dict:
    return {
        "measure": result["measure"],
        "test": test,
        "group_a": result["group_a"],
        "group_b": result["group_b"],
        "n_a": result.get("n_a"),
        "n_b": result.get("n_b"),
        "value_a": result.get(f"{values}_a"),
        "value_b": result.get(f"{values}_b"),
        "effect": result["effect"],
        "ci_low": result.get("ci_low") if interval else None,
        "ci_high": result.get("ci_high") if interval else None,
        "p": p,
        "unit": unit,
        "role": TEST_ROLES[test],
    }


def write_report(report: dict[str, pd.DataFrame], outdir: str | os.PathLike) -> dict[str, Path]:
    """Write the tables of :func:`compare_study` to ``outdir`` (:data:`REPORT_FILES`),
    all or none."""
    paths = {key: Path(outdir) / REPORT_FILES[key] for key in report if key in REPORT_FILES}
    with atomic_outputs(paths) as tmp:
        for key, path in tmp.items():
            report[key].to_csv(path, index=False)
    return paths
