"""Two groups compared with the synapse as the unit.

Vesicles of one synapse are not independent observations: they share its size, its state
and the quality of its tomogram, and synapses differ more from each other than vesicles of
one synapse do. A test that counts vesicles as independent (:func:`pooled_chi2`) then
finds differences that are only differences between synapses — on null experiments it
rejects far more often than its nominal rate (``benchmarks/group_statistics.py``). The tests
here respect the synapse:

:func:`synapse_test`
    one value per synapse (:mod:`.measures`), Welch's t-test and its confidence interval,
    and a permutation test of the synapses' group labels (exact for small groups);
:func:`hierarchical_bootstrap`
    confidence intervals that resample synapses, then vesicles within each, studentized
    (bootstrap-t) so that six synapses per group keep their 95 %;
:func:`cluster_glm`
    a binomial GLM of a per-vesicle yes/no (tethered, connected) with bias-reduced
    cluster-robust errors by synapse and t-tests on synapses − 1 degrees of freedom;
:func:`mixed_model`
    a linear mixed model of a per-vesicle or per-filament value (a random intercept per
    synapse; statsmodels' MixedLM), tested on synapses − 2 degrees of freedom;
:func:`compare_bins`
    one test per distance bin, with Holm's (or Benjamini–Hochberg's) control over the bins.

Every effect is the second group's minus the first's (the first group is the reference).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.errors import ParameterError

_UNIT = "tomogram"
_GROUP = "group"


def group_order(table: pd.DataFrame, group: str = _GROUP) -> tuple[str, str]:
    """The two groups of ``table`` in order of first appearance (reference first)."""
    names = list(pd.unique(table[group]))
    if len(names) != 2:
        raise ValueError(f"need exactly two groups, found {len(names)}: {names}")
    return names[0], names[1]


def _by_group(table, value, group, groups):
    a, b = groups or group_order(table, group)
    values = [table.loc[table[group] == g, value].to_numpy(float) for g in (a, b)]
    return (a, b), [v[~np.isnan(v)] for v in values]


def _difference_in_means(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def synapse_test(
    per_synapse: pd.DataFrame,
    value: str,
    *,
    group: str = _GROUP,
    groups: tuple[str, str] | None = None,
    confidence: float = 0.95,
    n_permutations: int | None = 9999,
    seed: int = 0,
) -> dict:
    """Compare one value per synapse between two groups.

    Parameters
    ----------
    per_synapse : pandas.DataFrame
        One row per synapse (e.g. :func:`analysis.stats.synapse_measures`); NaN values
        (a synapse that cannot say) are left out.
    value : str
        The column to compare.
    group : str
        The group column; ``groups`` orders the two (reference first).
    confidence : float
        Level of the confidence interval.
    n_permutations : int or None
        Random relabellings of the permutation test (all of them when there are fewer,
        e.g. 924 for 6 + 6 synapses); None skips it.
    seed : int

    Returns
    -------
    dict
        ``measure, group_a, group_b, n_a, n_b, mean_a, mean_b, effect`` (b − a),
        ``ci_low, ci_high`` (Welch), ``p_welch`` and ``p_permutation``.
    """
    (a, b), (xa, xb) = _by_group(per_synapse, value, group, groups)
    out = {
        "measure": value,
        "group_a": a,
        "group_b": b,
        "n_a": len(xa),
        "n_b": len(xb),
        "mean_a": float(np.mean(xa)) if len(xa) else np.nan,
        "mean_b": float(np.mean(xb)) if len(xb) else np.nan,
    }
    out["effect"] = out["mean_b"] - out["mean_a"]
    out.update(ci_low=np.nan, ci_high=np.nan, p_welch=np.nan, p_permutation=np.nan)
    if len(xa) < 2 or len(xb) < 2:
        return out
    if np.ptp(np.concatenate([xa, xb])) == 0:  # all synapses alike (e.g. none tethered)
        out.update(ci_low=0.0, ci_high=0.0)  # nothing to test: p stays NaN
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a group without spread
        welch = sps.ttest_ind(xb, xa, equal_var=False)
        interval = welch.confidence_interval(confidence)
    out.update(ci_low=interval.low, ci_high=interval.high, p_welch=float(welch.pvalue))
    if n_permutations:
        perm = sps.permutation_test(
            (xb, xa),
            _difference_in_means,
            vectorized=True,
            n_resamples=n_permutations,
            rng=np.random.default_rng(seed),
        )
        out["p_permutation"] = float(perm.pvalue)
    return out


def hierarchical_bootstrap(
    rows: pd.DataFrame,
    value: str,
    *,
    unit: str = _UNIT,
    group: str = _GROUP,
    groups: tuple[str, str] | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    within: bool = True,
    interval: str = "studentized",
    seed: int = 0,
) -> dict:
    """Confidence intervals of two groups' means of per-synapse means, and of their difference.

    Each replicate resamples, within each group, the synapses with replacement and then the
    rows (vesicles, filaments) of each drawn synapse with replacement (``within=False``
    keeps a drawn synapse's rows as they are), and takes the mean over synapses of the rows'
    mean.

    ``interval="studentized"`` (bootstrap-t, the default) divides each replicate's distance
    from the estimate by the replicate's own standard error (the spread of its synapse means,
    as in Welch's t) and scales the quantiles of that ratio by the data's standard error.
    ``"percentile"`` takes the quantiles of the replicates themselves: with six synapses per
    group those intervals are too narrow (the resampled spread lacks the (n − 1)/n
    correction and the width of Student's t; Hesterberg 2015) and resampling
    vesicles as well adds their noise a second time, so the percentile interval is too narrow
    where synapses differ and too wide where they do not (``benchmarks/group_statistics.py``).
    Studentising corrects both, because the replicate's own standard error grows with the
    noise that resampling adds.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per vesicle (or filament) with ``value``, ``unit`` and ``group`` columns;
        NaN values are left out, and a synapse without any row.
    value : str
        E.g. a 0/1 column (tethered) for a fraction, ``n_tethers`` for tethers per vesicle.
    n_boot : int
    confidence : float
    within : bool
    interval : {"studentized", "percentile"}
    seed : int

    Returns
    -------
    dict
        ``measure, group_a, group_b, mean_a, mean_b, effect`` (b − a of the means of the
        per-synapse means), their intervals ``a_low, a_high, b_low, b_high, ci_low,
        ci_high`` and ``p_boot``: studentized, the fraction of replicates whose
        absolute t reaches the data's effect / standard error (counting the data as one
        replicate); percentile, twice the smaller tail of the replicates' differences about 0.
        Studentized intervals need two synapses with a value in each group (NaN otherwise).
    """
    if interval not in ("studentized", "percentile"):
        raise ParameterError(f"interval must be 'studentized' or 'percentile', not {interval!r}")
    a, b = groups or group_order(rows, group)
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    out = {"measure": value, "group_a": a, "group_b": b}
    estimate, replicate = {}, {}
    for key, name in (("a", a), ("b", b)):
        synapses = _synapse_values(rows[rows[group] == name], value, unit)
        if not synapses:
            raise ValueError(f"group {name!r} has no synapse with a value of {value!r}")
        estimate[key] = _mean_and_se(np.array([v.mean() for v in synapses]))
        replicate[key] = _mean_and_se(_resampled_means(synapses, n_boot, within, rng))
        out[f"mean_{key}"] = estimate[key][0]
    estimate["d"] = _difference(estimate["a"], estimate["b"])
    replicate["d"] = _difference(replicate["a"], replicate["b"])
    out["effect"] = out["mean_b"] - out["mean_a"]
    names = {"a": ("a_low", "a_high"), "b": ("b_low", "b_high"), "d": ("ci_low", "ci_high")}
    for key, (low, high) in names.items():
        if interval == "percentile":
            out[low], out[high] = np.quantile(replicate[key][0], [tail, 1 - tail])
        else:
            out[low], out[high] = _studentized(estimate[key], replicate[key], tail)
    difference = replicate["d"][0]
    if interval == "percentile":
        tails = min(np.mean(difference <= 0), np.mean(difference >= 0))
        out["p_boot"] = float(min(1.0, 2 * tails))
    else:
        out["p_boot"] = _studentized_p(estimate["d"], replicate["d"])
    return out


def _synapse_values(part, value, unit) -> list[np.ndarray]:
    """The non-NaN values of each synapse, in order of first appearance (none left empty)."""
    values = part[value].to_numpy(float)
    codes = pd.factorize(part[unit])[0]
    keep = ~np.isnan(values)
    values, codes = values[keep], codes[keep]
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)  # a synapse whose values are all NaN counts 0
    pieces = np.split(values[order], np.cumsum(counts)[:-1])
    return [v for v in pieces if len(v)]


def _resampled_means(synapses, n_boot, within, rng) -> np.ndarray:
    """(n_boot, synapses) means of the drawn synapses' (resampled) rows."""
    n = len(synapses)
    drawn = rng.integers(0, n, size=(n_boot, n))
    means = np.empty((n_boot, n))
    for i, v in enumerate(synapses):
        slots = drawn == i
        if within:
            resampled = v[rng.integers(0, len(v), size=(int(slots.sum()), len(v)))]
            means[slots] = resampled.mean(axis=1)
        else:
            means[slots] = v.mean()
    return means


def _mean_and_se(synapse_means):
    """Mean over the last axis and its standard error (NaN with one synapse)."""
    n = synapse_means.shape[-1]
    if n < 2:
        return synapse_means.mean(axis=-1), np.full(synapse_means.shape[:-1], np.nan)
    return synapse_means.mean(axis=-1), synapse_means.std(axis=-1, ddof=1) / np.sqrt(n)


def _difference(a, b):
    return b[0] - a[0], np.hypot(a[1], b[1])


def _t_ratios(estimate, replicate):
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (replicate[0] - estimate[0]) / replicate[1]
    # a replicate that neither moves nor spreads (all drawn synapses alike) says 0
    return np.where((replicate[0] == estimate[0]) & (replicate[1] == 0), 0.0, t)


def _studentized(estimate, replicate, tail):
    """Bootstrap-t interval: the estimate minus the replicates' t quantiles times its SE."""
    value, se = estimate
    if not np.isfinite(se):
        return np.nan, np.nan
    if se == 0:  # every synapse of the group(s) alike: no spread to scale
        return float(value), float(value)
    t = _t_ratios(estimate, replicate)
    t = t[~np.isnan(t)]
    # quantiles that are replicates (no interpolation towards an infinite ratio)
    low, high = np.quantile(t, [tail, 1 - tail], method="inverted_cdf")
    return float(value - high * se), float(value - low * se)


def _studentized_p(estimate, replicate) -> float:
    """Symmetric bootstrap-t p-value of 'no difference', the data counted as a replicate."""
    value, se = estimate
    if not np.isfinite(se) or (se == 0 and value == 0):
        return np.nan if not np.isfinite(se) else 1.0
    observed = abs(value) / se if se > 0 else np.inf
    t = np.abs(_t_ratios(estimate, replicate))
    return float((1 + np.sum(t >= observed)) / (1 + len(t)))


def _units(rows, unit, group):
    """Synapse codes, distinct even where two groups reuse a tomogram name."""
    return pd.factorize(rows[group].astype(str) + "\x00" + rows[unit].astype(str))[0]


def cluster_glm(
    rows: pd.DataFrame,
    outcome: str,
    *,
    unit: str = _UNIT,
    group: str = _GROUP,
    groups: tuple[str, str] | None = None,
    confidence: float = 0.95,
) -> dict:
    """Binomial GLM of a per-vesicle yes/no on the group, errors clustered by synapse.

    Fitted as a GEE with independent working correlation (the same estimate as a GLM) and
    the Mancl–DeRouen bias-reduced cluster-robust covariance, tested with t on synapses − 1
    degrees of freedom: the plain cluster-robust errors are too small with a dozen synapses
    (see ``benchmarks/group_statistics.py``). The estimate is the log odds ratio of the two
    groups' pooled proportions (each vesicle weighs the same).

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per vesicle; ``outcome`` a boolean or 0/1 column.

    Returns
    -------
    dict
        ``measure, group_a, group_b, proportion_a, proportion_b, effect`` (log odds ratio),
        ``ci_low, ci_high`` (of the log odds ratio), ``odds_ratio``, ``p_glm``,
        ``n_synapses``; NaN where a group is all yes or all no (no odds ratio).
    """
    import statsmodels.api as sm

    a, b = groups or group_order(rows, group)
    rows = rows[rows[group].isin([a, b])]
    y = rows[outcome].to_numpy(float)
    x = (rows[group] == b).to_numpy(float)
    clusters = _units(rows, unit, group)
    n_units = int(clusters.max() + 1) if len(clusters) else 0
    out = {
        "measure": outcome,
        "group_a": a,
        "group_b": b,
        "proportion_a": float(y[x == 0].mean()) if (x == 0).any() else np.nan,
        "proportion_b": float(y[x == 1].mean()) if (x == 1).any() else np.nan,
        "n_synapses": n_units,
    }
    out.update(effect=np.nan, ci_low=np.nan, ci_high=np.nan, odds_ratio=np.nan, p_glm=np.nan)
    if not all(0 < out[f"proportion_{k}"] < 1 for k in "ab"):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GEE's notes on the scale and on few clusters
        fit = sm.GEE(y, sm.add_constant(x), groups=clusters, family=sm.families.Binomial()).fit(
            cov_type="bias_reduced"
        )
    estimate, se = float(fit.params[1]), float(fit.bse[1])
    half = sps.t.ppf(0.5 + confidence / 2, n_units - 1) * se
    out.update(
        effect=estimate,
        ci_low=estimate - half,
        ci_high=estimate + half,
        odds_ratio=float(np.exp(estimate)),
        p_glm=float(2 * sps.t.sf(abs(estimate / se), n_units - 1)),
    )
    return out


def mixed_model(
    rows: pd.DataFrame,
    value: str,
    *,
    unit: str = _UNIT,
    group: str = _GROUP,
    groups: tuple[str, str] | None = None,
    confidence: float = 0.95,
) -> dict:
    """Linear mixed model ``value ~ group + (1 | synapse)`` (REML, statsmodels MixedLM).

    The group is a property of whole synapses, so its effect is tested with t on
    synapses − 2 degrees of freedom (the between-synapse error's), not with MixedLM's
    normal Wald test, which rejects too often with few synapses.

    Returns
    -------
    dict
        ``measure, group_a, group_b, effect`` (b − a), ``ci_low, ci_high``, ``p_mixed``,
        ``n_synapses``, ``synapse_sd`` and ``residual_sd`` (the fitted spreads).
    """
    import statsmodels.formula.api as smf

    a, b = groups or group_order(rows, group)
    rows = rows[rows[group].isin([a, b]) & rows[value].notna()]
    data = pd.DataFrame(
        {
            "y": rows[value].to_numpy(float),
            "x": (rows[group] == b).to_numpy(float),
            "unit": _units(rows, unit, group),
        }
    )
    n_units = int(data["unit"].nunique())
    out = {"measure": value, "group_a": a, "group_b": b, "n_synapses": n_units}
    out.update(effect=np.nan, ci_low=np.nan, ci_high=np.nan, p_mixed=np.nan)
    out.update(synapse_sd=np.nan, residual_sd=np.nan)
    if n_units < 3 or data["x"].nunique() < 2:
        return out
    with warnings.catch_warnings():
        # a synapse variance at 0 (the boundary) is an answer here, not a failure
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("y ~ x", data, groups=data["unit"]).fit(reml=True)
        estimate, se = float(fit.fe_params["x"]), float(fit.bse_fe["x"])
        synapse_var = float(fit.cov_re.iloc[0, 0])
        if not np.isfinite(se):  # at the boundary the Hessian is singular: the model is OLS
            ols = smf.ols("y ~ x", data).fit()
            estimate, se, synapse_var = float(ols.params["x"]), float(ols.bse["x"]), 0.0
    df = n_units - 2
    half = sps.t.ppf(0.5 + confidence / 2, df) * se
    out.update(
        effect=estimate,
        ci_low=estimate - half,
        ci_high=estimate + half,
        p_mixed=float(2 * sps.t.sf(abs(estimate / se), df)) if se > 0 else np.nan,
        synapse_sd=float(np.sqrt(max(synapse_var, 0.0))),
        residual_sd=float(np.sqrt(fit.scale)),
    )
    return out


def pooled_chi2(
    rows: pd.DataFrame,
    outcome: str,
    *,
    group: str = _GROUP,
    groups: tuple[str, str] | None = None,
) -> dict:
    """χ² test of a 2 × 2 table of pooled vesicles (group × yes/no), ignoring the synapse.

    Only valid where the vesicles are independent, which at a synapse they are not: shown as
    the cautionary comparison (it rejects too often between synapses that differ by chance).

    Returns
    -------
    dict
        ``measure, group_a, group_b, proportion_a, proportion_b, effect`` (difference of
        the pooled proportions), ``chi2``, ``p_chi2``, ``n_vesicles``.
    """
    a, b = groups or group_order(rows, group)
    counts = np.array(
        [[(rows.loc[rows[group] == g, outcome] == v).sum() for v in (True, False)] for g in (a, b)]
    )
    totals = counts.sum(axis=1)
    out = {"measure": outcome, "group_a": a, "group_b": b, "n_vesicles": int(totals.sum())}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["proportion_a"], out["proportion_b"] = counts[:, 0] / totals
    out["effect"] = out["proportion_b"] - out["proportion_a"]
    if (counts.sum(axis=0) == 0).any() or (totals == 0).any():
        return {**out, "chi2": np.nan, "p_chi2": np.nan}
    result = sps.chi2_contingency(counts)
    return {**out, "chi2": float(result.statistic), "p_chi2": float(result.pvalue)}


def compare_bins(
    per_bin: pd.DataFrame,
    value: str,
    *,
    method: str = "holm",
    alpha: float = 0.05,
    group: str = _GROUP,
    groups: tuple[str, str] | None = None,
    n_permutations: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`synapse_test` in every distance bin, adjusted for the number of bins.

    Parameters
    ----------
    per_bin : pandas.DataFrame
        One row per synapse and bin (:func:`analysis.stats.synapse_bins`,
        :func:`analysis.stats.layer_density`): ``from_nm``, ``to_nm``, ``value``.
    method : str
        Of :func:`statsmodels.stats.multitest.multipletests`: ``"holm"`` (family-wise
        error over the bins) or ``"fdr_bh"`` (false discovery rate).
    alpha : float
    n_permutations : int, optional
        Test by permutation instead of Welch's t.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``from_nm, to_nm`` and the :func:`synapse_test` columns, ``p``
        (Welch's, or the permutation's), ``p_adjusted`` and ``reject``. Bins where a group
        has fewer than two synapses with a value are left out of the family.
    """
    from statsmodels.stats.multitest import multipletests

    groups = groups or group_order(per_bin, group)
    rows = []
    for (low, high), part in per_bin.groupby(["from_nm", "to_nm"], sort=True):
        result = synapse_test(
            part, value, group=group, groups=groups, n_permutations=n_permutations, seed=seed
        )
        rows.append({"from_nm": low, "to_nm": high, **result})
    table = pd.DataFrame(rows)
    table["p"] = table["p_permutation"] if n_permutations else table["p_welch"]
    table["p_adjusted"] = np.nan
    table["reject"] = False
    tested = table["p"].notna().to_numpy()
    if tested.any():
        reject, adjusted, _, _ = multipletests(table.loc[tested, "p"], alpha, method)
        table.loc[tested, "p_adjusted"] = adjusted
        table.loc[tested, "reject"] = reject
    return table
