"""analysis.stats: per-synapse measures, tests with the synapse as the unit, the table model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from analysis import stats
from analysis.errors import ParameterError


def _vesicles(rows):
    """Pooled vesicle table from (group, tomogram, distance, tethers, connectors) rows."""
    return pd.DataFrame(
        rows,
        columns=["group", "tomogram", "az_membrane_distance_nm", "n_tethers", "n_connectors"],
    )


def _per_synapse(values_a, values_b, column="x"):
    return pd.DataFrame(
        {
            "group": ["a"] * len(values_a) + ["b"] * len(values_b),
            "tomogram": [f"s{i}" for i in range(len(values_a) + len(values_b))],
            column: list(values_a) + list(values_b),
        }
    )


def test_synapse_measures_count_the_proximal_zone_of_each_synapse():
    vesicles = _vesicles(
        [
            ("wt", "s1", 0.0, 1, 0),
            ("wt", "s1", 30.0, 0, 2),
            ("wt", "s1", 45.0, 2, 1),  # the zone's edge is in
            ("wt", "s1", 60.0, 0, 3),  # distal: not counted
            ("wt", "s2", 100.0, 0, 0),  # no proximal vesicle at all
        ]
    )
    filaments = pd.DataFrame(
        {
            "group": ["wt"] * 3,
            "tomogram": ["s1"] * 3,
            "kind": ["connector", "connector", "tether"],
            "length_nm": [6.0, 10.0, 12.0],
        }
    )
    m = stats.synapse_measures(vesicles, filaments).set_index("tomogram")
    assert m.loc["s1", "n_vesicles"] == 4 and m.loc["s1", "n_proximal"] == 3
    assert m.loc["s1", "tethered"] == pytest.approx(2 / 3)
    assert m.loc["s1", "connected"] == pytest.approx(2 / 3)
    assert m.loc["s1", "tethers_per_vesicle"] == pytest.approx(1.0)
    assert m.loc["s1", "connectors_per_vesicle"] == pytest.approx(1.0)
    assert m.loc["s1", "connector_length_nm"] == 8.0 and m.loc["s1", "tether_length_nm"] == 12.0
    assert m.loc["s2", "n_proximal"] == 0 and np.isnan(m.loc["s2", "tethered"])
    assert np.isnan(m.loc["s2", "connector_length_nm"])


def test_synapse_bins_give_every_synapse_every_bin():
    vesicles = _vesicles(
        [("wt", "s1", 2.0, 1, 0), ("wt", "s1", 3.0, 0, 1), ("ko", "s2", 30.0, 1, 1)]
    )
    bins = stats.synapse_bins(vesicles, (0.0, 5.0, 45.0))
    assert len(bins) == 4
    s1 = bins[bins["tomogram"] == "s1"].set_index("from_nm")
    assert s1.loc[0.0, "n_vesicles"] == 2 and s1.loc[0.0, "tethered"] == 0.5
    assert s1.loc[0.0, "n_tethered"] == 1 and s1.loc[0.0, "n_connected"] == 1
    assert s1.loc[5.0, "n_vesicles"] == 0 and np.isnan(s1.loc[5.0, "tethered"])


def test_layer_density_sums_the_layers_of_each_bin():
    layers = pd.DataFrame(
        {
            "group": "wt",
            "tomogram": "s1",
            "distance_nm": [2.5, 5.0, 7.5, 10.0, 12.5],
            "voxels": [100, 100, 200, 200, 50],
            "vesicle_voxels": [0, 50, 100, 50, 0],
        }
    )
    density = stats.layer_density(layers, bin_nm=5.0, max_nm=10.0)
    assert density["from_nm"].tolist() == [0.0, 5.0]
    assert density["volume_fraction"].tolist() == pytest.approx([50 / 200, 150 / 400])


def test_synapse_test_effect_interval_and_exact_permutation_p():
    table = _per_synapse([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [11.0, 12.0, 13.0, 14.0, 15.0, 16.0])
    r = stats.synapse_test(table, "x", n_permutations=10000)
    assert r["effect"] == 10.0 and r["n_a"] == r["n_b"] == 6
    assert r["ci_low"] < 10.0 < r["ci_high"]
    # Welch: difference ± t(10) × sqrt(2 × 3.5 / 6)
    assert r["ci_high"] - 10.0 == pytest.approx(2.2281 * np.sqrt(7 / 6), rel=1e-3)
    # all 924 splits tried; only the observed one and its mirror are as extreme
    assert r["p_permutation"] == pytest.approx(2 / 924)


def test_synapse_test_leaves_out_synapses_without_a_value_and_untestable_data():
    table = _per_synapse([0.2, np.nan, 0.4], [0.5, 0.7, np.nan])
    r = stats.synapse_test(table, "x", n_permutations=None)
    assert r["n_a"] == 2 and r["n_b"] == 2 and r["effect"] == pytest.approx(0.3)
    flat = stats.synapse_test(_per_synapse([0, 0, 0], [0, 0]), "x")
    assert np.isnan(flat["p_welch"]) and flat["effect"] == 0


def test_hierarchical_bootstrap_of_synapses_that_differ_only_between_groups():
    rows = pd.DataFrame(
        {
            "group": ["a"] * 6 + ["b"] * 6,
            "tomogram": ["s1", "s1", "s2", "s2", "s3", "s3", "t1", "t1", "t2", "t2", "t3", "t3"],
            "value": [1.0] * 6 + [3.0] * 6,
        }
    )
    r = stats.hierarchical_bootstrap(rows, "value", n_boot=200, seed=1)
    assert r["effect"] == r["ci_low"] == r["ci_high"] == 2.0
    assert r["p_boot"] == pytest.approx(1 / 201)  # the smallest p of 200 replicates
    r = stats.hierarchical_bootstrap(rows, "value", n_boot=200, interval="percentile")
    assert r["effect"] == r["ci_low"] == r["ci_high"] == 2.0 and r["p_boot"] == 0.0
    with pytest.raises(ParameterError, match="interval"):
        stats.hierarchical_bootstrap(rows, "value", interval="bca")


def _one_value_per_synapse(values_a, values_b):
    table = _per_synapse(values_a, values_b, column="value")
    return table.assign(tomogram=table["group"] + table["tomogram"])


def test_studentized_bootstrap_of_six_synapses_is_as_wide_as_students_interval():
    """Six synapses per group, one value each: the bootstrap-t interval is about Welch's
    (t on about 10 df), the percentile interval too narrow by about z / t * sqrt(5/6)."""
    table = _one_value_per_synapse([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.5, 3.5, 4.5, 5.5, 6.5, 7.5])
    welch = stats.synapse_test(table, "value", n_permutations=None)
    # SD of 1..6 is 1.871: standard error of the difference 1.080, t(0.975, 10 df) = 2.228
    assert welch["ci_high"] - welch["ci_low"] == pytest.approx(2 * 2.228 * 1.080, abs=0.01)
    boot = {
        interval: stats.hierarchical_bootstrap(
            table, "value", n_boot=4000, within=False, interval=interval, seed=2
        )
        for interval in ("studentized", "percentile")
    }
    width = {k: r["ci_high"] - r["ci_low"] for k, r in boot.items()}
    assert width["studentized"] == pytest.approx(2 * 2.228 * 1.080, rel=0.1)
    assert width["percentile"] == pytest.approx(2 * 1.96 * 1.080 * np.sqrt(5 / 6), rel=0.1)
    assert boot["studentized"]["p_boot"] == pytest.approx(welch["p_welch"], abs=0.03)  # 0.195


def test_studentized_bootstrap_keeps_five_percent_where_percentile_does_not():
    """400 null experiments of 6 + 6 synapses that differ (SD 1) with 5 vesicles each
    (SD 1): the percentile bootstrap of synapses rejects about 10 %, the studentized 5 %."""
    rng = np.random.default_rng(11)
    rejected = {"studentized": 0, "percentile": 0}
    for k in range(400):
        values = np.repeat(rng.normal(0, 1, 12), 5) + rng.normal(0, 1, 60)
        rows = pd.DataFrame(
            {"group": np.repeat(["a", "b"], 30), "tomogram": np.repeat(np.arange(12), 5)}
        ).assign(value=values)
        for interval in rejected:
            r = stats.hierarchical_bootstrap(
                rows, "value", n_boot=400, within=False, interval=interval, seed=k
            )
            rejected[interval] += r["p_boot"] < 0.05
    assert 0.02 <= rejected["studentized"] / 400 <= 0.08
    assert rejected["percentile"] / 400 >= 0.08


def test_hierarchical_bootstrap_interval_widens_with_the_spread_between_synapses():
    rng = np.random.default_rng(3)

    def table(between_sd):
        means = np.repeat(rng.normal(0, between_sd, 12), 30)
        return pd.DataFrame(
            {
                "group": np.repeat(["a", "b"], 180),
                "tomogram": np.repeat([f"s{i}" for i in range(12)], 30),
                "value": means + rng.normal(0, 1, 360),
            }
        )

    narrow, wide = (stats.hierarchical_bootstrap(table(sd), "value", seed=0) for sd in (0, 2))
    assert wide["ci_high"] - wide["ci_low"] > 3 * (narrow["ci_high"] - narrow["ci_low"])
    assert narrow["a_low"] < narrow["mean_a"] < narrow["a_high"]


def test_cluster_glm_estimates_the_log_odds_ratio_of_the_pooled_proportions():
    rows = []
    for group, synapses in (("a", [(3, 10), (2, 10), (1, 10)]), ("b", [(6, 10), (4, 10), (5, 10)])):
        for k, (yes, n) in enumerate(synapses):
            rows += [(group, f"{group}{k}", i < yes) for i in range(n)]
    table = pd.DataFrame(rows, columns=["group", "tomogram", "tethered"])
    r = stats.cluster_glm(table, "tethered")
    assert r["proportion_a"] == pytest.approx(0.2) and r["proportion_b"] == pytest.approx(0.5)
    assert r["effect"] == pytest.approx(logit(0.5) - logit(0.2), abs=1e-6)
    assert r["ci_low"] < r["effect"] < r["ci_high"] and r["n_synapses"] == 6
    chi2 = stats.pooled_chi2(table, "tethered")
    assert chi2["effect"] == pytest.approx(0.3) and chi2["n_vesicles"] == 60
    # the pooled test sees 60 vesicles, the GLM 6 synapses: the pooled p is smaller
    assert chi2["p_chi2"] < r["p_glm"]


def test_cluster_glm_gives_no_odds_ratio_for_a_group_without_any_yes():
    table = pd.DataFrame(
        {"group": ["a", "a", "b", "b"], "tomogram": list("wxyz"), "tethered": [0, 0, 1, 0]}
    )
    assert np.isnan(stats.cluster_glm(table, "tethered")["effect"])


def test_mixed_model_recovers_a_group_effect_between_noisy_synapses():
    rng = np.random.default_rng(7)
    synapse = np.repeat(np.arange(16), 25)
    group = np.where(synapse < 8, "a", "b")
    value = 10 + 2.0 * (group == "b") + rng.normal(0, 1.0, 16)[synapse] + rng.normal(0, 3, 400)
    rows = pd.DataFrame({"group": group, "tomogram": synapse.astype(str), "length_nm": value})
    r = stats.mixed_model(rows, "length_nm")
    assert r["ci_low"] < 2.0 < r["ci_high"] and r["p_mixed"] < 0.05
    assert 0.3 < r["synapse_sd"] < 2.0 and 2.5 < r["residual_sd"] < 3.5


def test_compare_bins_adjusts_over_the_tested_bins_only():
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):
        group = "a" if k < 6 else "b"
        shift = 0.4 if group == "b" else 0.0
        rows.append((group, f"s{k}", 0.0, 5.0, 0.2 + shift + rng.normal(0, 0.05)))
        rows.append((group, f"s{k}", 5.0, 10.0, 0.5 + rng.normal(0, 0.05)))
        rows.append((group, f"s{k}", 10.0, 20.0, 0.0))  # nothing varies: no test
    table = pd.DataFrame(rows, columns=["group", "tomogram", "from_nm", "to_nm", "tethered"])
    result = stats.compare_bins(table, "tethered", method="holm").set_index("from_nm")
    assert result.loc[0.0, "reject"] and not result.loc[5.0, "reject"]
    assert np.isnan(result.loc[10.0, "p_adjusted"])
    # Holm over two bins: the smallest p doubled
    assert result.loc[0.0, "p_adjusted"] == pytest.approx(min(1.0, 2 * result.loc[0.0, "p"]))


def test_the_table_model_is_recovered_from_its_own_tables():
    truth = stats.SynapseModel(tethered_sd=0.6, connectors_sd=0.3, count_sd=0.2)
    vesicles, filaments = truth.simulate(400, seed=11)
    fitted = stats.fit_synapse_model(vesicles, filaments)
    assert np.allclose(fitted.vesicles_per_bin, truth.vesicles_per_bin, rtol=0.08)
    assert fitted.tethered_logit[0] == pytest.approx(truth.tethered_logit[0], abs=0.2)
    assert np.isneginf(fitted.tethered_logit[-1])
    assert fitted.tethered_sd == pytest.approx(0.6, abs=0.2)
    assert fitted.count_sd == pytest.approx(0.2, abs=0.07)
    assert fitted.length_mean_nm["connector"] == pytest.approx(12.0, abs=0.3)


def test_population_effects_follow_the_effect_put_in():
    model = stats.SynapseModel()
    truth = stats.population_effects(
        model,
        stats.with_effect(model, proximal_count_factor=1.5, connector_length_nm=2.0),
        n_synapses=3000,
    )
    proximal = sum(model.vesicles_per_bin[:4])  # bins up to 45 nm
    assert truth["welch:n_proximal"] == pytest.approx(0.5 * proximal, rel=0.1)
    assert truth["mixed:connector_length_nm"] == pytest.approx(2.0, abs=0.15)
    assert abs(truth["welch:tethered"]) < 0.02


def test_pooling_vesicles_inflates_false_positives_where_synapses_differ():
    """A small, seeded version of benchmarks/group_statistics.py: 60 null experiments of
    6 + 6 synapses whose tethered fractions differ (log-odds SD 1)."""
    model = replace(
        stats.SynapseModel(), vesicles_per_bin=(10, 9, 12, 18, 24, 44, 25), tethered_sd=1.0
    )
    rates = stats.power_curve(model, model, [6], n_experiments=60, seed=99).iloc[0]
    assert rates["synapse"] <= 0.1 and rates["glm"] <= 0.1  # 5 % would be 3 of 60
    assert rates["pooled"] >= 0.25


def test_compare_study_writes_every_table(tmp_path):
    model = stats.SynapseModel()
    vesicles, filaments = stats.simulate_experiment(
        model, stats.with_effect(model, proximal_count_factor=2.0), 5, seed=4
    )
    report = stats.compare_study(vesicles, filaments, n_boot=200, n_permutations=999)
    tests = report["statistics"].set_index(["measure", "test"])
    assert set(tests.index.get_level_values("test")) == {
        "welch",
        "permutation",
        "bootstrap",
        "glm",
        "chi2",
        "mixed",
    }
    assert (tests.xs("chi2", level="test")["role"] == "comparison only").all()
    assert (tests.xs("welch", level="test")["role"] == "recommended").all()
    assert (tests.xs("bootstrap", level="test")["role"] == "recommended").all()
    assert (tests.xs("mixed", level="test")["role"] == "alternative").all()
    welch = tests.loc[("n_proximal", "welch")]
    assert welch["p"] < 0.05 and welch["effect"] > 10
    paths = stats.write_report(report, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    assert len(pd.read_csv(paths["per_synapse"])) == 10


def test_error_rates_give_each_rate_its_wilson_interval():
    from analysis.stats.power import _rate

    # 50 of 1000: 5 % within 3.81-6.53 % (Wilson), standard error 0.69 %
    r = _rate("rejected", 50, 1000)
    assert r["rejected"] == 0.05 and r["rejected_se"] == pytest.approx(0.00689, abs=1e-5)
    assert (r["rejected_low"], r["rejected_high"]) == pytest.approx((0.0381, 0.0653), abs=1e-4)
    # none of 4: up to z^2 / (n + z^2) = 0.49
    assert _rate("coverage", 0, 4)["coverage_high"] == pytest.approx(0.490, abs=1e-3)
