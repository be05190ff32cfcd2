"""Experiments simulated at the level of the tables: error rates, coverage and power.

Segmenting hundreds of simulated experiments is not needed to learn how a test behaves:
what matters is how the numbers vary between synapses and between vesicles of one synapse.
:class:`SynapseModel` is a hierarchical model of the per-vesicle and per-filament tables of
one group, fitted (:func:`fit_synapse_model`) to measured tables — of generated synapses, or
of your own data. For each simulated synapse it draws

- a vesicle count per distance bin: Poisson around the bin's mean times a synapse factor
  (log-normal, SD ``count_sd``);
- per vesicle, whether it is tethered: logit = the bin's + a synapse effect (normal, SD
  ``tethered_sd``), with 1 + Poisson(``extra_tethers``) tethers when it is;
- per vesicle, its connectors: Poisson, log mean = the bin's + a synapse effect (SD
  ``connectors_sd``);
- per filament, its length: normal around the kind's mean + a synapse effect.

:func:`simulate_experiment` draws two groups; :func:`experiment_tests` runs each test of
:mod:`.comparisons` on one experiment; :func:`error_rates` runs many (null experiments give
the false-positive rates, experiments with an effect the coverage of the intervals and the
power); :func:`population_effects` gives the true effects they should find.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from analysis.active_zone import DEFAULT_BINS_NM
from analysis.stats import comparisons
from analysis.stats.measures import PROXIMAL_NM, synapse_bins, synapse_measures

_KINDS = ("connector", "tether")


@dataclass(frozen=True)
class SynapseModel:
    """Hierarchical model of one group's tables (module notes). Lengths in nm.

    Attributes
    ----------
    bins_nm : tuple of float
        Distance bin edges (vesicle membrane to AZ membrane).
    vesicles_per_bin : tuple of float
        Mean vesicles per synapse in each bin.
    count_sd : float
        SD of the log synapse factor on the counts.
    tethered_logit : tuple of float
        Log odds of being tethered in each bin (-inf: never).
    tethered_sd : float
        SD of the synapse effect on those log odds.
    extra_tethers : float
        Mean tethers beyond the first of a tethered vesicle.
    connectors_log : tuple of float
        Log of the mean connectors per vesicle in each bin (-inf: none).
    connectors_sd : float
        SD of the synapse effect on the log mean.
    length_mean_nm, length_between_sd_nm, length_within_sd_nm : dict
        Per kind: mean filament length, SD of synapse means around it, SD within a synapse.
    """

    bins_nm: tuple = DEFAULT_BINS_NM
    vesicles_per_bin: tuple = (3.0, 3.0, 4.0, 8.0, 10.0, 18.0, 12.0)
    count_sd: float = 0.2
    tethered_logit: tuple = (0.4, 0.4, -1.0, -np.inf, -np.inf, -np.inf, -np.inf)
    tethered_sd: float = 0.4
    extra_tethers: float = 0.05
    connectors_log: tuple = (-0.7, -0.7, -0.7, -0.7, -0.7, -0.7, -0.7)
    connectors_sd: float = 0.2
    length_mean_nm: dict = field(default_factory=lambda: {"connector": 12.0, "tether": 14.0})
    length_between_sd_nm: dict = field(default_factory=lambda: {"connector": 1.0, "tether": 1.0})
    length_within_sd_nm: dict = field(default_factory=lambda: {"connector": 4.0, "tether": 4.0})

    def simulate(
        self, n_synapses: int, seed=0, *, group: str = "a", prefix: str = "syn"
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Vesicle and filament tables of ``n_synapses`` drawn synapses.

        Returns
        -------
        vesicles : pandas.DataFrame
            ``group, tomogram, az_membrane_distance_nm, n_tethers, n_connectors`` (one row
            per vesicle; distances uniform within their bin).
        filaments : pandas.DataFrame
            ``group, tomogram, kind, length_nm`` (a connector per two connector ends).
        """
        rng = np.random.default_rng(seed)
        edges = np.asarray(self.bins_nm, float)
        lam = np.asarray(self.vesicles_per_bin, float)
        names = np.array([f"{prefix}{i + 1:03d}" for i in range(n_synapses)], dtype=object)
        # one draw per synapse of each of its effects, then its vesicles all at once
        factor = np.exp(rng.normal(0, self.count_sd, n_synapses) - self.count_sd**2 / 2)
        tether_effect = rng.normal(0, self.tethered_sd, n_synapses)
        connector_effect = rng.normal(0, self.connectors_sd, n_synapses) - self.connectors_sd**2 / 2
        counts = rng.poisson(np.outer(factor, lam))
        synapse = np.repeat(np.arange(n_synapses), counts.sum(axis=1))
        where = np.concatenate([np.repeat(np.arange(len(lam)), row) for row in counts])
        where = where.astype(int)
        n = len(where)
        distance = rng.uniform(edges[where], edges[where + 1])
        p = expit(np.asarray(self.tethered_logit, float)[where] + tether_effect[synapse])
        tethered = rng.uniform(size=n) < p
        n_tethers = tethered * (1 + rng.poisson(self.extra_tethers, n))
        mean = np.exp(np.asarray(self.connectors_log, float)[where] + connector_effect[synapse])
        n_connectors = rng.poisson(mean)
        vesicles = pd.DataFrame(
            {
                "group": group,
                "tomogram": names[synapse],
                "az_membrane_distance_nm": distance,
                "n_tethers": n_tethers,
                "n_connectors": n_connectors,
            }
        )
        per_synapse = {
            "connector": np.bincount(synapse, n_connectors, n_synapses).astype(int) // 2,
            "tether": np.bincount(synapse, n_tethers, n_synapses).astype(int),
        }
        filaments = []
        for kind in _KINDS:
            centres = self.length_mean_nm[kind] + rng.normal(
                0, self.length_between_sd_nm[kind], n_synapses
            )
            owner = np.repeat(np.arange(n_synapses), per_synapse[kind])
            lengths = rng.normal(centres[owner], self.length_within_sd_nm[kind])
            filaments.append(
                pd.DataFrame(
                    {"group": group, "tomogram": names[owner], "kind": kind, "length_nm": lengths}
                )
            )
        return vesicles, pd.concat(filaments, ignore_index=True)


def fit_synapse_model(
    vesicles: pd.DataFrame, filaments: pd.DataFrame, bins_nm=DEFAULT_BINS_NM
) -> SynapseModel:
    """A :class:`SynapseModel` with the means and spreads of measured tables (one group).

    Means are pooled over vesicles; the synapse-to-synapse spreads are moment estimates:
    the variance of the per-synapse totals beyond what the vesicle-level (Poisson, binomial)
    variation explains, on the log or logit scale to first order; 0 where there is none.

    Parameters
    ----------
    vesicles : pandas.DataFrame
        Pooled vesicle table of the group's synapses (``tomogram``,
        ``az_membrane_distance_nm``, ``n_tethers``, ``n_connectors``); vesicles beyond the
        last bin are left out.
    filaments : pandas.DataFrame
        Pooled filament table (``tomogram``, ``kind``, ``length_nm``).
    bins_nm : sequence of float
    """
    edges = np.asarray(bins_nm, float)
    inside = vesicles[
        (vesicles["az_membrane_distance_nm"] >= edges[0])
        & (vesicles["az_membrane_distance_nm"] < edges[-1])
    ]
    per_bin = synapse_bins(inside, edges)
    per_bin["n_connectors"] = per_bin["connectors_per_vesicle"].fillna(0) * per_bin["n_vesicles"]
    n_synapses = per_bin["tomogram"].nunique()
    sums = per_bin.groupby("from_nm", sort=True)[["n_vesicles", "n_tethered", "n_connectors"]].sum()
    n = sums["n_vesicles"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, sums["n_tethered"] / n, 0.0)
        mean_conn = np.where(n > 0, sums["n_connectors"] / n, 0.0)
    totals = per_bin.groupby("tomogram")["n_vesicles"].sum().to_numpy(float)
    count_var = np.log1p(max(totals.var(ddof=1) - totals.mean(), 0.0) / totals.mean() ** 2)
    # per synapse: tethered vesicles and connectors observed against what the bins' means
    # predict for its vesicles
    p_bin = per_bin["from_nm"].map(dict(zip(edges[:-1], p, strict=False)))
    conn_bin = per_bin["from_nm"].map(dict(zip(edges[:-1], mean_conn, strict=False)))
    per_bin["expected"] = per_bin["n_vesicles"] * p_bin
    per_bin["binomial"] = per_bin["expected"] * (1 - p_bin)
    per_bin["conn_expected"] = per_bin["n_vesicles"] * conn_bin
    s = per_bin.groupby("tomogram")[
        ["n_tethered", "expected", "binomial", "n_connectors", "conn_expected"]
    ].sum()
    tethered_var = _excess(s["n_tethered"] - s["expected"], s["binomial"], s["binomial"])
    connectors_var = _excess(
        s["n_connectors"] - s["conn_expected"], s["conn_expected"], s["conn_expected"]
    )
    tethered = inside[inside["n_tethers"] > 0]["n_tethers"]
    lengths = {kind: filaments[filaments["kind"] == kind] for kind in _KINDS}
    with np.errstate(divide="ignore"):
        return SynapseModel(
            bins_nm=tuple(edges),
            vesicles_per_bin=tuple(n / n_synapses),
            count_sd=float(np.sqrt(count_var)),
            tethered_logit=tuple(np.where(p > 0, logit(np.clip(p, 0, 1 - 1e-9)), -np.inf)),
            tethered_sd=float(np.sqrt(tethered_var)),
            extra_tethers=float(tethered.mean() - 1) if len(tethered) else 0.0,
            connectors_log=tuple(np.log(mean_conn)),
            connectors_sd=float(np.sqrt(connectors_var)),
            length_mean_nm={k: _mean(t["length_nm"], 12.0) for k, t in lengths.items()},
            length_between_sd_nm={k: _between_sd(t) for k, t in lengths.items()},
            length_within_sd_nm={k: _within_sd(t) for k, t in lengths.items()},
        )


def _mean(values, default):
    return float(values.mean()) if len(values) else default


def _excess(residual, variance, scale) -> float:
    """Moment estimate of a random effect's variance: E[r² − v] / E[s²], at least 0."""
    scale2 = float((scale**2).sum())
    return max(float((residual**2 - variance).sum()) / scale2, 0.0) if scale2 > 0 else 0.0


def _within_sd(filaments) -> float:
    sd = filaments.groupby("tomogram")["length_nm"].std(ddof=1).dropna()
    return float(np.sqrt((sd**2).mean())) if len(sd) else 4.0


def _between_sd(filaments) -> float:
    stats = filaments.groupby("tomogram")["length_nm"].agg(["mean", "count"])
    if len(stats) < 2:
        return 0.0
    within = _within_sd(filaments) ** 2
    return float(np.sqrt(max(stats["mean"].var(ddof=1) - within * (1 / stats["count"]).mean(), 0)))


def with_effect(
    model: SynapseModel,
    *,
    tethered_logit: float = 0.0,
    proximal_count_factor: float = 1.0,
    connectors_log: float = 0.0,
    connector_length_nm: float = 0.0,
    proximal_nm: float = PROXIMAL_NM,
) -> SynapseModel:
    """``model`` changed by a known effect: log odds of tethering (+ in every bin where
    vesicles are tethered), the mean count of proximal-zone bins (×), connectors per vesicle
    (log, +) and connector length (nm, +)."""
    edges = np.asarray(model.bins_nm, float)
    near = edges[1:] <= proximal_nm
    counts = np.asarray(model.vesicles_per_bin, float) * np.where(near, proximal_count_factor, 1)
    lengths = dict(model.length_mean_nm)
    lengths["connector"] += connector_length_nm
    return replace(
        model,
        vesicles_per_bin=tuple(counts),
        tethered_logit=tuple(np.asarray(model.tethered_logit, float) + tethered_logit),
        connectors_log=tuple(np.asarray(model.connectors_log, float) + connectors_log),
        length_mean_nm=lengths,
    )


def simulate_experiment(
    model_a: SynapseModel,
    model_b: SynapseModel,
    n_per_group: int | tuple[int, int],
    seed=0,
    groups: tuple[str, str] = ("control", "treated"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pooled vesicle and filament tables of one two-group experiment (module notes)."""
    sizes = (n_per_group, n_per_group) if np.isscalar(n_per_group) else n_per_group
    seeds = np.random.SeedSequence(seed).spawn(2)
    parts = [
        model.simulate(n, s, group=name, prefix=f"{name}_")
        for model, n, s, name in zip((model_a, model_b), sizes, seeds, groups, strict=True)
    ]
    return tuple(pd.concat(p, ignore_index=True) for p in zip(*parts, strict=True))


#: The measures :func:`experiment_tests` compares.
TESTED_MEASURES = ("tethered", "connectors_per_vesicle", "n_proximal", "connector_length_nm")
#: The hierarchical bootstraps :func:`experiment_tests` runs: name, (``within``,
#: ``interval``) of :func:`~analysis.stats.hierarchical_bootstrap`. ``bootstrap`` is the
#: package's (:func:`analysis.stats.compare_study`); the others show why it is studentized and
#: whether resampling vesicles matters.
BOOTSTRAP_VARIANTS = {
    "bootstrap": (True, "studentized"),
    "bootstrap_synapses": (False, "studentized"),
    "bootstrap_percentile": (True, "percentile"),
    "bootstrap_synapses_percentile": (False, "percentile"),
}


def experiment_tests(
    vesicles: pd.DataFrame,
    filaments: pd.DataFrame,
    *,
    n_boot: int = 1000,
    n_permutations: int | None = 999,
    bins_nm=(0.0, 5.0, 10.0, 20.0, 45.0),
    seed: int = 0,
) -> dict:
    """Every test of :mod:`.comparisons` on one experiment, as a flat dict.

    Keys are ``TEST:MEASURE:FIELD`` with FIELD ``p``, ``effect``, ``ci_low``, ``ci_high``:
    ``welch`` and ``permutation`` on the per-synapse :data:`TESTED_MEASURES`; on three of
    them the :func:`~analysis.stats.hierarchical_bootstrap` as the package runs it,
    ``bootstrap`` (synapses, then vesicles; studentized), and :data:`BOOTSTRAP_VARIANTS`
    beside it; ``glm`` (log odds ratio) and ``chi2`` (pooled, ignoring the synapse) on proximal
    vesicles being tethered, ``mixed`` on connector lengths, and ``holm:tethered_bins:p``,
    the smallest Holm-adjusted p over the proximal bins (for the family-wise error).
    """
    groups = comparisons.group_order(vesicles)
    measures = synapse_measures(vesicles, filaments)
    out = {}
    for measure in TESTED_MEASURES:
        r = comparisons.synapse_test(
            measures, measure, groups=groups, n_permutations=n_permutations, seed=seed
        )
        out |= _fields("welch", measure, r, "p_welch")
        out[f"permutation:{measure}:p"] = r["p_permutation"]
    near = vesicles[vesicles["az_membrane_distance_nm"] <= PROXIMAL_NM].assign(
        tethered=lambda t: t["n_tethers"] > 0
    )
    for measure, rows, column in (
        ("tethered", near, "tethered"),
        ("connectors_per_vesicle", near, "n_connectors"),
        ("connector_length_nm", filaments[filaments["kind"] == "connector"], "length_nm"),
    ):
        for test, (within, interval) in BOOTSTRAP_VARIANTS.items():
            r = comparisons.hierarchical_bootstrap(
                rows,
                column,
                groups=groups,
                n_boot=n_boot,
                within=within,
                interval=interval,
                seed=seed,
            )
            out |= _fields(test, measure, r, "p_boot")
    out |= _fields(
        "glm", "tethered", comparisons.cluster_glm(near, "tethered", groups=groups), "p_glm"
    )
    out |= _fields(
        "chi2", "tethered", comparisons.pooled_chi2(near, "tethered", groups=groups), "p_chi2"
    )
    connectors = filaments[filaments["kind"] == "connector"]
    r = comparisons.mixed_model(connectors, "length_nm", groups=groups)
    out |= _fields("mixed", "connector_length_nm", r, "p_mixed")
    inner = vesicles[vesicles["az_membrane_distance_nm"] < bins_nm[-1]]
    bins = comparisons.compare_bins(synapse_bins(inner, bins_nm), "tethered", groups=groups)
    out["holm:tethered_bins:p"] = float(bins["p_adjusted"].min())
    return out


def _fields(test, measure, result, p_key) -> dict:
    keys = {"p": p_key, "effect": "effect", "ci_low": "ci_low", "ci_high": "ci_high"}
    return {f"{test}:{measure}:{k}": result.get(v, np.nan) for k, v in keys.items()}


def error_rates(
    model_a: SynapseModel,
    model_b: SynapseModel,
    n_per_group: int,
    n_experiments: int,
    *,
    seed: int = 0,
    alpha: float = 0.05,
    truth: dict | None = None,
    progress: bool = False,
    **options,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run :func:`experiment_tests` on ``n_experiments`` simulated experiments.

    Parameters
    ----------
    model_a, model_b : SynapseModel
        The groups (the same model: null experiments).
    n_per_group : int
    n_experiments : int
    seed : int
        Experiment ``k`` is drawn with ``(seed, k)``.
    alpha : float
    truth : dict, optional
        True effect per ``TEST:MEASURE`` (see :func:`population_effects`) for coverage.
    options
        Of :func:`experiment_tests`.

    Returns
    -------
    experiments : pandas.DataFrame
        One row per experiment, the :func:`experiment_tests` columns.
    summary : pandas.DataFrame
        Per test and measure: ``rejected`` (fraction with p < alpha; the false-positive
        rate on null experiments, the power otherwise), its binomial standard error
        ``rejected_se`` and 95 % Wilson interval ``rejected_low, rejected_high``; where a
        truth is given, ``coverage`` of the intervals (over the experiments that gave one,
        ``coverage_experiments``), ``coverage_se``, ``coverage_low`` and ``coverage_high``.
    """
    rows = []
    indices = range(n_experiments)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="experiments")
    for k in indices:
        vesicles, filaments = simulate_experiment(model_a, model_b, n_per_group, seed=[seed, k])
        rows.append(experiment_tests(vesicles, filaments, seed=k, **options))
    experiments = pd.DataFrame(rows)
    summary = []
    for column in (c for c in experiments.columns if c.endswith(":p")):
        test, measure, _ = column.split(":")
        p = experiments[column].dropna()
        row = {"test": test, "measure": measure, "experiments": len(p)}
        row |= _rate("rejected", int((p < alpha).sum()), len(p))
        key = f"{test}:{measure}"
        if truth is not None and key in truth and f"{key}:ci_low" in experiments:
            low, high = experiments[f"{key}:ci_low"], experiments[f"{key}:ci_high"]
            valid = low.notna() & high.notna()
            covered = ((low <= truth[key]) & (truth[key] <= high))[valid]
            row["coverage_experiments"] = int(valid.sum())
            row |= _rate("coverage", int(covered.sum()), int(valid.sum()))
        summary.append(row)
    return experiments, pd.DataFrame(summary)


def _rate(name: str, count: int, total: int) -> dict:
    """A binomial proportion, its standard error and its 95 % Wilson interval."""
    from statsmodels.stats.proportion import proportion_confint

    if total == 0:
        return {name: np.nan, f"{name}_se": np.nan, f"{name}_low": np.nan, f"{name}_high": np.nan}
    rate = count / total
    low, high = proportion_confint(count, total, alpha=0.05, method="wilson")
    return {
        name: rate,
        f"{name}_se": float(np.sqrt(rate * (1 - rate) / total)),
        f"{name}_low": float(low),
        f"{name}_high": float(high),
    }


def population_effects(
    model_a: SynapseModel, model_b: SynapseModel, *, n_synapses: int = 20000, seed: int = 0
) -> dict:
    """The true effects (b − a) the tests of :func:`experiment_tests` estimate.

    By Monte Carlo over ``n_synapses`` synapses per group: the difference of the means of
    the per-synapse measures (over synapses where the measure exists), and for ``glm`` the
    log odds ratio of the vesicle-pooled proximal tethered proportions.
    """
    means, pooled = {}, {}
    for key, model in (("a", model_a), ("b", model_b)):
        vesicles, filaments = model.simulate(n_synapses, [seed, ord(key)])
        measures = synapse_measures(vesicles, filaments)
        means[key] = measures[list(TESTED_MEASURES)].mean()
        near = vesicles["az_membrane_distance_nm"] <= PROXIMAL_NM
        pooled[key] = float((vesicles.loc[near, "n_tethers"] > 0).mean())
    truth = {}
    for measure in TESTED_MEASURES:
        effect = float(means["b"][measure] - means["a"][measure])
        for test in ("welch", *BOOTSTRAP_VARIANTS):
            truth[f"{test}:{measure}"] = effect
    truth["mixed:connector_length_nm"] = truth["welch:connector_length_nm"]
    truth["glm:tethered"] = float(logit(pooled["b"]) - logit(pooled["a"]))
    return truth


def tethered_tests(vesicles: pd.DataFrame) -> dict:
    """p-values of three tests of the proximal tethered fraction on one experiment:
    ``synapse`` (Welch on per-synapse fractions), ``glm`` (:func:`comparisons.cluster_glm`)
    and ``pooled`` (:func:`comparisons.pooled_chi2`, which ignores the synapse)."""
    groups = comparisons.group_order(vesicles)
    near = vesicles[vesicles["az_membrane_distance_nm"] <= PROXIMAL_NM].assign(
        tethered=lambda t: t["n_tethers"] > 0
    )
    per_synapse = synapse_measures(vesicles)
    return {
        "synapse": comparisons.synapse_test(
            per_synapse, "tethered", groups=groups, n_permutations=None
        )["p_welch"],
        "glm": comparisons.cluster_glm(near, "tethered", groups=groups)["p_glm"],
        "pooled": comparisons.pooled_chi2(near, "tethered", groups=groups)["p_chi2"],
    }


def power_curve(
    model_a: SynapseModel,
    model_b: SynapseModel,
    sizes,
    *,
    n_experiments: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """How often each of :func:`tethered_tests` rejects, against synapses per group.

    With ``model_b`` = ``model_a`` this is the false-positive rate; otherwise the power.

    Returns
    -------
    pandas.DataFrame
        ``n_per_group``, one column per test (fraction of simulated experiments with
        p < ``alpha``) and ``experiments``.
    """
    rows = []
    for n in sizes:
        p = pd.DataFrame(
            [
                tethered_tests(simulate_experiment(model_a, model_b, n, seed=[seed, n, k])[0])
                for k in range(n_experiments)
            ]
        )
        rows.append({"n_per_group": n, **(p < alpha).mean().to_dict(), "experiments": len(p)})
    return pd.DataFrame(rows)
