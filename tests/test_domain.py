"""The domain check: known geometry in, the check that should warn warns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.inference import domain
from analysis.io import read_tomogram, write_mrc


@pytest.fixture(scope="module")
def quick_test_tomogram():
    """The nominal quick synthetic test tomogram (generator v3, seed 301, 64×128×128, 2.2 nm)."""
    from analysis.synthetic import example_files

    return read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])


@pytest.fixture(scope="module")
def nominal_report(quick_test_tomogram):
    t = quick_test_tomogram
    return domain.check_tomogram(t.data, t.voxel_size_nm, name="test_s301_quick")


def _shells(rng, shape=(32, 64, 64), radius=8.0, noise=0.3):
    """Noise with three dark membranes (2 voxels thick) around brighter lumens."""
    volume = rng.normal(0, noise, size=shape).astype(np.float32)
    grid = np.indices(shape)
    for centre in ((16, 16, 16), (16, 40, 24), (16, 24, 48)):
        r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
        volume[np.abs(r - radius) < 1.0] -= 1.0
    return volume


def _wedged_noise(rng, shape=(32, 64, 64), max_tilt_deg=60.0):
    """White noise whose Fourier components in the missing wedge of a ±60° tilt series about
    y (beam along z) are removed."""
    from analysis.augment import missing_wedge

    return missing_wedge(rng.normal(size=shape).astype(np.float32), max_tilt_deg)


def test_dark_membranes_skew_negative_and_inverting_flips_the_sign(rng):
    volume = _shells(rng)
    skew = domain.polarity_skew(volume)
    assert skew < -0.3
    assert domain.polarity_skew(-volume) == pytest.approx(-skew, rel=1e-4)
    noise = rng.normal(size=domain.CROP_SHAPE)  # noise has no sign: no warning either way
    assert abs(domain.polarity_skew(noise)) < domain.THRESHOLDS["polarity_skew"]


def test_the_wedge_of_a_tilt_about_y_is_found_and_a_transposed_one_is_not_taken_for_it(rng):
    volume = _wedged_noise(rng)
    depths = domain.wedge_contrasts(domain.power_spectrum(volume))
    assert max(depths, key=depths.get) == (0, 1) and depths[(0, 1)] > 2.0
    swapped = np.swapaxes(volume, 0, 1)  # beam along y: a tomogram not rotated after `tilt`
    depths = domain.wedge_contrasts(domain.power_spectrum(swapped))
    assert max(depths, key=depths.get) == (1, 0)
    features = domain.image_features(swapped, 2.2)
    assert features["wedge_margin"] > domain.THRESHOLDS["wedge_margin"]
    assert features["wedge_best"] == "beam y, tilt axis z"


def test_white_noise_has_a_flat_spectrum_and_distances_are_rms_log_differences(rng):
    noise = rng.normal(size=(32, 64, 64))
    spectrum = domain.radial_log_amplitude(domain.power_spectrum(noise), 2.2)
    assert np.isfinite(spectrum).all() and np.ptp(spectrum) < 0.15
    assert domain.spectrum_distance(spectrum, [spectrum + 0.3, spectrum - 1.0]) == pytest.approx(
        0.3
    )
    half = spectrum.copy()
    half[::2] = np.nan  # bins beyond a coarse tomogram's Nyquist frequency are left out
    assert domain.spectrum_distance(half, [spectrum + 0.2]) == pytest.approx(0.2)
    # the spectrum does not depend on the size of the volume, only on its content
    small = domain.radial_log_amplitude(domain.power_spectrum(noise[:16, :32, :32]), 2.2)
    assert domain.spectrum_distance(small, [spectrum]) < 0.15


def test_tta_and_vesicle_statistics_of_known_numbers():
    p = np.array([0.0, 0.05, 0.3, 0.6, 0.9, 1.0])
    var = np.array([0.0, 1.0, 0.04, 0.01, 0.0, 0.0])
    stats = domain.tta_statistics(p, var)
    assert stats["tta_disagreement"] == pytest.approx((0.2 + 0.1) / 4)  # voxels above 0.1
    assert stats["foreground"] == pytest.approx(3 / 6)
    assert stats["ambiguous"] == pytest.approx(2 / 6)
    table = pd.DataFrame(
        {
            "kept": [True, True, True, True, False],
            "radius_nm": [10.0, 20.0, 25.0, 40.0, 22.0],
            "membrane_contrast": [0.2, 0.4, 0.6, 0.8, 5.0],
        }
    )
    v = domain.vesicle_statistics(table, scale=2.0)
    assert v["n_vesicles"] == 4 and v["kept_fraction"] == pytest.approx(0.8)
    assert v["radius_in_range"] == pytest.approx(0.5) and v["radius_median_nm"] == 22.5
    assert v["shell_contrast"] == pytest.approx(0.25)


def test_assess_warns_exactly_where_a_number_crosses_its_threshold():
    t = domain.THRESHOLDS
    features = {
        "voxel_size_nm": 2.2,
        "model_voxel_size_nm": 2.2,
        "rescale_factor": 1.0,
        "polarity_skew": -0.4,
        "wedge_margin": -3.0,
        "tilt_axis_margin": -6.0,
        "wedge_depth": 7.0,
        "wedge_best": "beam z, tilt axis y",
        "spectrum_distance": 0.1,
        "reference": "v3_sample",
        "tta_disagreement": 0.01,
        "foreground": 0.1,
        "n_vesicles": 30.0,
        "radius_in_range": 0.9,
        "radius_median_nm": 20.0,
        "shell_contrast": 0.3,
    }
    checks = domain.assess(features)
    assert [c.status for c in checks] == ["pass"] * 8
    worse = {  # feature: (value just beyond its threshold, the check that must warn)
        "rescale_factor": (t["rescale_factor"][1] * 1.01, "voxel_size"),
        "polarity_skew": (t["polarity_skew"] + 0.01, "polarity"),
        "wedge_margin": (t["wedge_margin"] + 0.01, "missing_wedge"),
        "tilt_axis_margin": (t["tilt_axis_margin"] + 0.01, "missing_wedge"),
        "spectrum_distance": (t["spectrum_distance"] * 1.01, "spectrum"),
        "tta_disagreement": (t["tta_disagreement"] * 1.01, "tta_disagreement"),
        "foreground": (t["foreground"][0] * 0.99, "foreground"),
        "radius_in_range": (t["vesicle_radii"] * 0.99, "vesicle_radii"),
        "shell_contrast": (t["shell_profile"] - 0.01, "shell_profile"),
    }
    for key, (value, name) in worse.items():
        statuses = {c.name: c.status for c in domain.assess({**features, key: value})}
        assert statuses[name] == "warn" and list(statuses.values()).count("warn") == 1, key
    skipped = domain.assess({**features, "spectrum_distance": np.nan})
    assert [c.status for c in skipped].count("skip") == 1
    # asked to invert a tomogram whose membranes are dark already: warn
    inverted = {c.name: c for c in domain.assess({**features, "inverted": 1.0})}
    assert (
        inverted["polarity"].status == "warn" and "without --invert" in inverted["polarity"].action
    )


def test_the_nominal_quick_test_tomogram_passes_every_check(nominal_report):
    statuses = {c.name: c.status for c in nominal_report.checks}
    assert statuses == dict.fromkeys(
        ("voxel_size", "polarity", "missing_wedge", "spectrum", "tta_disagreement", "foreground"),
        "pass",
    )
    assert nominal_report.summary() == "domain check: all 6 checks pass"
    assert nominal_report.features["reference"]  # the shipped network's training data has one


def test_inverted_transposed_and_finely_sampled_tomograms_each_warn_on_their_check(
    quick_test_tomogram,
):
    t = quick_test_tomogram
    cases = {
        "polarity": (-t.data, t.voxel_size_nm),
        "missing_wedge": (np.swapaxes(t.data, 0, 1), t.voxel_size_nm),
        "voxel_size": (t.data, 0.5),  # rescaled by 4.4 to the network's 2.2 nm
    }
    for name, (data, voxel_size_nm) in cases.items():
        checks = domain.assess(domain.domain_features(data, voxel_size_nm, tta=False))
        assert {c.name for c in checks if c.status == "warn"} >= {name}, name
        assert next(c for c in checks if c.name == name).action, name


def test_a_report_round_trips_through_json(nominal_report, tmp_path):
    path = nominal_report.write_json(tmp_path / "t_check.json")
    data = json.loads(path.read_text())
    assert data["summary"] == nominal_report.summary() and len(data["checks"]) == 6
    again = domain.DomainReport.from_dict(data)
    assert again.checks == nominal_report.checks
    assert again.to_dict() == json.loads(nominal_report.to_json())
    assert [p.name for p in tmp_path.iterdir()] == ["t_check.json"]  # no temporary file left


def test_inverting_in_predict_equals_predicting_the_inverted_tomogram(quick_test_tomogram):
    from analysis.inference import predict

    crop = domain.central_crop(quick_test_tomogram.data, (32, 64, 64))
    a = predict(crop, 2.2, invert=True)
    b = predict(-crop, 2.2)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_cli_check_prints_one_line_per_check_and_exits_0_on_warnings(
    quick_test_tomogram, tmp_path, capsys
):
    from analysis.cli import main

    t = quick_test_tomogram
    path = write_mrc(tmp_path / "inverted.mrc", -t.data, t.voxel_size_nm)
    assert main(["check", str(path), "--out", str(tmp_path / "c.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and "of 6 checks warn (polarity" in lines[-1]
    assert lines[1].startswith("polarity") and "--invert" in lines[1]
    report = json.loads((tmp_path / "c.json").read_text())
    assert main(["check", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report


def test_segment_auto_inverts_an_inverted_tomogram_and_writes_its_check(
    quick_test_tomogram, tmp_path
):
    from analysis.pipeline import segment_file
    from analysis.synthetic import example_files

    t = quick_test_tomogram
    path = write_mrc(tmp_path / "inv.mrc", -t.data, t.voxel_size_nm)
    out = tmp_path / "out"
    out.mkdir()
    paths = segment_file(path, out, invert="auto", write_probability=False)
    report = domain.DomainReport.from_dict(json.loads(paths["check"].read_text()))
    assert paths["check"].name == "inv_check.json" and report.info["inverted"]
    assert report.check("polarity").status == "pass"
    assert "segmented inverted" in report.check("polarity").reason
    assert {"vesicle_radii", "shell_profile"} <= {c.name for c in report.checks}
    table = pd.read_csv(paths["vesicles"])
    truth = pd.read_csv(example_files("test", seed=301, quick=True)["vesicles"])
    assert abs(int(table["kept"].sum()) - len(truth)) <= 2


def test_segment_says_the_check_on_stderr_unless_quiet_and_all_pass(
    segmented_example, tmp_path, capsys
):
    from analysis.cli import main

    assert "domain check: all" in segmented_example.stderr  # not quiet
    assert main([*segmented_example.args, "--out", str(tmp_path), "--quiet"]) == 0
    assert "domain check: all" not in capsys.readouterr().err


def test_a_finer_tomograms_spectrum_is_measured_as_the_segmentation_normalises_it():
    """A tomogram at 1.4 nm (the independent simulator's row, half size) is resampled to the
    network's 2.2 nm and normalised after, as the segmentation does it; its 1–99 % range
    narrows to about a third. The check measures the spectrum of the central crop with the
    scale carried over, and so finds the distance to the training spectra that the tomogram
    resampled whole and normalised has — not 0.6 farther, as with the scale of the tomogram at
    its own voxel size."""
    import dataclasses

    from analysis import testsim
    from analysis.inference.rescale import to_network_grid
    from analysis.inference.spectrum import central_crop, load_references, select_reference
    from analysis.models import Predictor
    from analysis.normalise import centre_and_scale

    params = testsim.shift_params("voxel1p4")
    params = dataclasses.replace(params, shape=tuple(n // 2 for n in params.shape))
    fine = testsim.make_tomogram(params, 5)
    assert fine.voxel_size_nm == pytest.approx(1.4)
    meta = Predictor.load().checkpoint
    reference = select_reference(meta, load_references())["log_amplitude"]

    whole = to_network_grid(fine.tomogram, fine.voxel_size_nm / meta["voxel_size_nm"])
    centre, scale = centre_and_scale(whole, meta["normalisation"])
    seen = domain.image_features((central_crop(whole, domain.CROP_SHAPE) - centre) / scale, 2.2)
    expected = domain.spectrum_distance(seen["log_amplitude"], reference)

    features = domain.domain_features(fine.tomogram, fine.voxel_size_nm, tta=False)
    assert features["spectrum_distance"] == pytest.approx(expected, abs=0.03)
    assert expected < 0.3  # the resampled tomogram is like the training data
    _, own_scale = centre_and_scale(fine.tomogram, meta["normalisation"])
    assert scale / own_scale < 0.5  # the range the check carries over
