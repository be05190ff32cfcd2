"""Active-zone geometry on analytic volumes: a flat membrane, balls at known heights, rods."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from analysis import evaluate
from analysis.active_zone import (
    DEFAULT_THRESHOLDS,
    angle_to_beam_deg,
    az_distance_map,
    find_filaments,
    layer_profile,
    layers,
    proximal_counts,
    vesicle_distances,
)
from analysis.active_zone.cuts import path_cuts
from analysis.evaluate import filament_detection
from analysis.io import paint_ball

VS = 2.0  # nm per voxel
SHAPE = (30, 60, 40)
Y_AZ = 10  # the membrane is the plane y = 10, one voxel thick; the cytoplasm is y > 10


def flat_synapse(balls):
    az = np.zeros(SHAPE, bool)
    az[:, Y_AZ, :] = True
    region = np.zeros(SHAPE, bool)
    region[:, Y_AZ + 1 :, :] = True
    labels = np.zeros(SHAPE, np.int32)
    rows = []
    for i, (centre, r) in enumerate(balls, start=1):
        paint_ball(labels, np.asarray(centre, float), r, i)
        rows.append(
            {
                "vesicle_id": i,
                "z_vox": centre[0],
                "y_vox": centre[1],
                "x_vox": centre[2],
                "radius_vox": r,
            }
        )
    return az, region, labels, pd.DataFrame(rows)


def test_distances_to_a_flat_membrane_are_exact():
    az, region, labels, table = flat_synapse([((15, 30.0, 20), 5.0), ((15, 16.4, 8), 5.0)])
    distance = az_distance_map(az, VS)
    assert distance[4, 25, 7] == pytest.approx(15 * VS)
    assert distance[4, Y_AZ, 7] == 0.0
    out = vesicle_distances(table, labels, az, VS)
    np.testing.assert_allclose(out["az_distance_nm"], [20 * VS, 6.4 * VS])
    # sphere surface to membrane face: 30 − 5 − 10.5 = 14.5 and 16.4 − 5 − 10.5 = 0.9 voxels
    np.testing.assert_allclose(out["az_membrane_distance_nm"], [14.5 * VS, 0.9 * VS], atol=VS)
    # the distance map in voxels, computed once by analyse_active_zone, gives the same
    again = vesicle_distances(table, labels, az, VS, az_distance_vox=distance / VS)
    pd.testing.assert_frame_equal(again, out, atol=1e-4)
    np.testing.assert_array_equal(
        layers(az, region, az_distance_vox=distance / VS), layers(az, region)
    )


def test_layers_are_one_voxel_thick_and_parallel_to_the_membrane():
    az, region, labels, table = flat_synapse([((15, 30.0, 20), 5.0)])
    layer = layers(az, region)
    assert layer[3, Y_AZ + 1, 5] == 1 and layer[3, Y_AZ + 15, 5] == 15
    assert layer[3, Y_AZ, 5] == 0 and layer[3, 2, 5] == 0  # membrane and outside the region
    assert (layer[:, Y_AZ + 7, :] == 7).all()
    profile = layer_profile(layer, labels, table, VS).set_index("layer")
    assert profile.loc[20, "n_centres"] == 1 and profile["n_centres"].sum() == 1
    occupied = profile.index[profile["n_vesicles"] > 0]
    assert occupied.min() == 15 and occupied.max() == 25  # y = 25 … 35
    assert profile.loc[20, "volume_fraction"] == pytest.approx(np.pi * 25 / (30 * 40), rel=0.1)
    assert profile.loc[20, "distance_nm"] == 20 * VS


def test_proximal_counts_fill_the_distance_bins():
    counts = proximal_counts([0.0, 2.0, 7.0, 30.0, 100.0, 400.0], bins_nm=(0, 5, 10, 45, 250))
    assert list(counts["n_vesicles"]) == [2, 1, 1, 1]
    assert list(counts["cumulative"]) == [2, 3, 4, 5]


def _rod(volume, a, b, value, radius=1.2):
    grids = np.indices(volume.shape).reshape(3, -1).T.astype(float)
    a, b = np.asarray(a, float), np.asarray(b, float)
    t = np.clip((grids - a) @ (b - a) / np.dot(b - a, b - a), 0, 1)
    near = np.linalg.norm(grids - (a + t[:, None] * (b - a)), axis=1) <= radius
    volume.reshape(-1)[near] = value


def test_a_connector_and_a_tether_are_found_and_nothing_else():
    balls = [((15, 24.0, 12), 5.0), ((15, 24.0, 28), 5.0), ((15, 45.0, 12), 5.0)]
    az, region, labels, table = flat_synapse(balls)
    rng = np.random.default_rng(0)
    tomo = rng.normal(0, 1.0, SHAPE).astype(np.float32)
    tomo[labels > 0] = 1.0
    # Rods 2.5 noise SDs dark: a connector 1–2 across the 5 free voxels between the balls
    # (x = 18 … 22) and a tether 1–AZ across 8 (y = 11 … 18).
    _rod(tomo, (15, 24, 17), (15, 24, 23), -2.5)
    _rod(tomo, (15, 19, 12), (15, 10, 12), -2.5)
    tomo[az] = -2.5
    thresholds = np.arange(-2.0, -0.95, 0.1)  # below the noise's percolation (−0.5 SD)
    found = find_filaments(tomo, labels, az, region, VS, smooth_nm=0.0, thresholds=thresholds)
    table_f = found.table.set_index("kind")
    assert sorted(found.table["kind"]) == ["connector", "tether"]
    assert (table_f.loc["connector", "vesicle_a"], table_f.loc["connector", "vesicle_b"]) == (1, 2)
    assert (table_f.loc["tether", "vesicle_a"], table_f.loc["tether", "vesicle_b"]) == (1, 0)
    assert table_f.loc["connector", "length_nm"] == pytest.approx(5 * VS, abs=VS)
    assert table_f.loc["tether", "length_nm"] == pytest.approx(8 * VS, abs=VS)
    # both lie across the beam (z): the connector along x, the tether along y
    assert table_f["angle_to_beam_deg"].tolist() == pytest.approx([90, 90], abs=15)
    per = found.per_vesicle.set_index("vesicle_id")
    columns = ["n_connectors", "n_connected_vesicles", "n_tethers"]
    assert per.loc[1, columns].tolist() == [1, 1, 1] and per.loc[3, columns].tolist() == [0, 0, 0]
    assert found.table["n_pieces"].tolist() == [1, 1]
    truth = pd.DataFrame(
        {"kind": ["connector", "tether"], "vesicle_a": [2, 1], "vesicle_b": [1, 0]}
    )
    assert filament_detection(found.table, truth)["f1"] == 1.0
    assert (found.labels > 0).sum() == pytest.approx(found.table["volume_nm3"].sum() / VS**3)


def test_a_connector_along_the_beam_has_a_small_angle_to_it():
    # two balls stacked along z, 6 free voxels apart (z = 12 … 18), joined by a rod along z
    az, region, labels, _ = flat_synapse([((6, 30.0, 20), 5.0), ((24, 30.0, 20), 5.0)])
    tomo = np.random.default_rng(1).normal(0, 1.0, SHAPE).astype(np.float32)
    tomo[labels > 0] = 1.0
    _rod(tomo, (10, 30, 20), (20, 30, 20), -2.5)
    tomo[az] = -2.5
    found = find_filaments(
        tomo, labels, az, region, VS, smooth_nm=0.0, thresholds=np.arange(-2.0, -0.95, 0.1)
    )
    connector = found.table[found.table["kind"] == "connector"]
    assert len(connector) == 1
    assert connector["angle_to_beam_deg"].item() == pytest.approx(0, abs=15)
    assert connector["length_nm"].item() == pytest.approx(7 * VS, abs=1.5 * VS)


def test_angles_to_the_beam_of_known_directions():
    assert angle_to_beam_deg([3.0, 0.0, 0.0]) == 0.0
    assert angle_to_beam_deg([-2.0, 0.0, 0.0]) == 0.0  # a line has no sign
    assert angle_to_beam_deg([0.0, 1.0, 0.0]) == pytest.approx(90.0)
    assert angle_to_beam_deg([1.0, 1.0, 0.0]) == pytest.approx(45.0)
    assert angle_to_beam_deg([1.0, 0.0, np.sqrt(3.0)]) == pytest.approx(60.0)
    assert np.isnan(angle_to_beam_deg([0.0, 0.0, 0.0]))
    many = angle_to_beam_deg(np.array([[0.0, 0.0, 5.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(many, [90.0, 0.0, np.nan])


def test_the_search_volumes_are_what_find_filaments_thresholds_and_tests():
    from analysis.active_zone import search_volumes

    balls = [((15, 24.0, 12), 5.0), ((15, 24.0, 28), 5.0)]
    az, region, labels, _ = flat_synapse(balls)
    tomo = np.random.default_rng(1).normal(0, 1.0, SHAPE).astype(np.float32)
    tomo[labels > 0] = 1.0
    search = search_volumes(tomo, labels, az, region, VS, smooth_nm=VS)
    # both volumes in SD of the analysed region, which excludes the widened boundaries
    for volume in (search.path_values, search.grey):
        assert volume[search.region].mean() == pytest.approx(0, abs=1e-5)
        assert volume[search.region].std() == pytest.approx(1, abs=1e-4)
    assert search.az_id == 3 and (search.boundaries[az] == 3).all()
    assert not (search.region & (search.boundaries > 0)).any()
    assert (search.exact > 0).sum() < (search.boundaries > 0).sum()  # widened by contact_nm
    # smoothing narrows the spread of the raw remainder: the smoothed copy is the other one
    assert not np.allclose(search.path_values, search.grey)
    found = find_filaments(tomo, labels, az, region, VS, smooth_nm=VS)
    assert found.membrane_contrast == search.contrast
    # called with its defaults, it prepares what find_filaments' defaults search
    shared = inspect.signature(search_volumes).parameters
    defaults = inspect.signature(find_filaments).parameters
    for name, parameter in shared.items():
        if parameter.default is not inspect.Parameter.empty:
            assert defaults[name].default == parameter.default, name


def test_pieces_between_the_same_two_vesicles_are_one_connector_unless_told_apart():
    # Two balls 4 voxels apart on x, joined by two dark rods parallel to their centre line,
    # 4 voxels above and below it: two pieces of one pair, 5 voxels (10 nm) apart.
    balls = [((15, 30.0, 10), 8.0), ((15, 30.0, 30), 8.0)]
    az, region, labels, _ = flat_synapse(balls)
    tomo = np.zeros(SHAPE, np.float32)
    for dz in (-4, 4):
        _rod(tomo, (15 + dz, 30, 10), (15 + dz, 30, 30), -3.0, radius=1.0)
    tomo[labels > 0] = 0.0
    options = dict(
        smooth_nm=0.0,
        thresholds=np.arange(-2.0, -0.95, 0.1),
        subtract_boundaries=False,
        search_nm=10.0,  # the path test reaches both rods
    )
    one = find_filaments(tomo, labels, az, region, VS, **options)  # default: merged
    assert len(one.table) == 1
    row = one.table.iloc[0]
    assert row[["kind", "vesicle_a", "vesicle_b", "n_pieces"]].tolist() == ["connector", 1, 2, 2]
    assert row["piece_gap_nm"] == pytest.approx(5 * VS)  # rods' voxels at z = 11 and 17
    # its length is a rod's (the gap 4 voxels off the axis, not the 4 on it), its volume both
    assert row["length_nm"] == pytest.approx(5 * VS, abs=VS)
    assert row["volume_nm3"] == pytest.approx((one.labels == 1).sum() * VS**3)
    assert set(np.unique(one.labels)) == {0, 1}
    per = one.per_vesicle.set_index("vesicle_id")
    assert per["n_connectors"].tolist() == [1, 1]
    # a tolerance below their gap, or none (Pyto), counts two connectors to one vesicle
    for merge_nm in (4.0, None):
        two = find_filaments(tomo, labels, az, region, VS, merge_nm=merge_nm, **options)
        assert two.table["n_pieces"].tolist() == [1, 1]
        per = two.per_vesicle.set_index("vesicle_id")
        assert per["n_connectors"].tolist() == [2, 2]
        assert per["n_connected_vesicles"].tolist() == [1, 1]
    # a tolerance just over the gap joins them again
    joined = find_filaments(tomo, labels, az, region, VS, merge_nm=5 * VS + 0.1, **options)
    assert joined.table["n_pieces"].tolist() == [2]


def test_filament_scores_count_pairs_once_and_map_vesicle_ids():
    truth = pd.DataFrame(
        {
            "kind": ["connector", "connector", "tether"],
            "vesicle_a": [1, 2, 3],
            "vesicle_b": [2, 3, 0],
        }
    )
    found = pd.DataFrame(
        {
            "kind": ["connector", "connector", "tether", "tether"],
            "vesicle_a": [12, 11, 13, 11],
            "vesicle_b": [11, 12, 0, 0],
        }
    )
    scores = filament_detection(found, truth, vesicle_map={11: 1, 12: 2, 13: 3})
    assert scores["n_found"] == 3 and scores["n_true"] == 3
    assert scores["recall"] == pytest.approx(2 / 3) and scores["precision"] == pytest.approx(2 / 3)
    assert scores["tether_recall"] == 1.0 and scores["tether_precision"] == 0.5


def test_the_true_filaments_found_are_marked_pair_by_pair():
    truth = pd.DataFrame(
        {
            "kind": ["connector", "connector", "tether"],
            "vesicle_a": [1, 3, 2],
            "vesicle_b": [2, 4, 0],
        }
    )
    # a connector found the other way round, twice, and a tether to the wrong vesicle
    found = pd.DataFrame(
        {
            "kind": ["connector", "connector", "tether"],
            "vesicle_a": [2, 2, 1],
            "vesicle_b": [1, 1, 0],
        }
    )
    marked = evaluate.filaments_found(found, truth)
    assert marked["found"].tolist() == [True, False, False]
    assert marked["found"].mean() == filament_detection(found, truth)["recall"]
    # found between segmented vesicles 11, 12, 20: mapped to the true ids first
    segmented = pd.DataFrame({"kind": ["tether"], "vesicle_a": [20], "vesicle_b": [0]})
    mapped = evaluate.filaments_found(segmented, truth, vesicle_map={20: 2})
    assert mapped["found"].tolist() == [False, False, True]


def test_counts_per_vesicle_and_their_errors_against_the_truth():
    from analysis.active_zone import count_per_vesicle
    from analysis.evaluate import count_errors

    def filaments(*rows):
        return pd.DataFrame(rows, columns=["kind", "vesicle_a", "vesicle_b"])

    # found: two connectors between vesicles 1 and 3, two tethers of vesicle 2
    found = filaments(("connector", 1, 3), ("connector", 3, 1), ("tether", 2, 0), ("tether", 2, 0))
    truth = filaments(("connector", 1, 3), ("tether", 1, 0))
    ids = [1, 2, 3, 4]
    counts = count_per_vesicle(found, ids).set_index("vesicle_id")
    assert counts["n_connectors"].tolist() == [2, 0, 2, 0]
    assert counts["n_connected_vesicles"].tolist() == [1, 0, 1, 0]
    assert counts["n_tethers"].tolist() == [0, 2, 0, 0]
    # a label volume gives the same ids (0, the background, left out)
    volume = np.array([[0, 1, 2], [3, 4, 4]])
    pd.testing.assert_frame_equal(count_per_vesicle(found, volume), count_per_vesicle(found, ids))
    true_counts = count_per_vesicle(truth, ids)
    errors = count_errors(count_per_vesicle(found, ids), true_counts)
    assert (errors["connectors_true"], errors["connectors_found"]) == (2, 4)
    assert errors["connectors_mae"] == 0.5 and errors["connectors_bias"] == 0.5
    assert errors["connectors_exact"] == 0.5
    assert errors["tethers_mae"] == 0.75 and errors["tethers_bias"] == 0.25
    assert errors["tethers_exact"] == 0.5
    assert errors["exact"] == 0.25 and errors["n_vesicles"] == 4  # only vesicle 4 is right
    partners = count_errors(count_per_vesicle(found, ids), true_counts, ["n_connected_vesicles"])
    assert partners["connected_vesicles_exact"] == 1.0
    # a vesicle missing from the found table counts 0 there
    missing = count_errors(count_per_vesicle(found, [1, 2, 3]), true_counts)
    assert missing["n_vesicles"] == 4 and missing["connectors_mae"] == 0.5


def test_tethered_and_connected_fractions_per_distance_bin():
    from analysis.active_zone import filaments_by_distance

    vesicles = pd.DataFrame(
        {
            "az_membrane_distance_nm": [0.0, 3.0, 7.0, 30.0, 100.0],
            "n_tethers": [1, 0, 2, 0, 0],
            "n_connectors": [0, 1, 1, 3, 0],
        }
    )
    out = filaments_by_distance(vesicles, bins_nm=(0, 5, 10, 45, 250, 300))
    assert out["n_vesicles"].tolist() == [2, 1, 1, 1, 0]
    np.testing.assert_allclose(out["tethered"][:4], [0.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(out["connected"][:4], [0.5, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(out["tethers_per_vesicle"][:4], [0.5, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(out["connectors_per_vesicle"][:4], [0.5, 1.0, 3.0, 0.0])
    assert np.isnan(out["tethered"].iloc[4])  # an empty bin has no fraction


def test_the_active_zone_command_writes_its_tables(tmp_path, capsys):
    from analysis.active_zone import AZ_OUTPUT_SUFFIXES
    from analysis.cli import main
    from analysis.io import read_tomogram
    from analysis.synthetic import example_files

    files = example_files("test", seed=301, quick=True)
    args = [
        "active-zone",
        str(files["tomogram"]),
        "--labels",
        str(files["labels"]),
        "--az-mask",
        str(files["az_mask"]),
        "--region-mask",
        str(files["region_mask"]),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    stem = files["tomogram"].stem
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        stem + s for s in AZ_OUTPUT_SUFFIXES.values()
    )
    vesicles = pd.read_csv(tmp_path / f"{stem}_az_vesicles.csv")
    truth = pd.read_csv(files["vesicles"])
    # The truth gives the height above the membrane's mid-plane; the nearest membrane voxel
    # (its cytoplasmic face, 2 nm up) is at most that far, within a voxel, and in the same order.
    ours, theirs = vesicles["az_distance_nm"], truth["az_distance_nm"]
    assert (ours <= theirs - 2.0 + 2.2).all()
    assert np.corrcoef(ours, theirs)[0, 1] > 0.995
    filaments = pd.read_csv(tmp_path / f"{stem}_filaments.csv")
    labels = read_tomogram(tmp_path / f"{stem}_filaments.mrc").data
    assert len(np.unique(labels)) == len(filaments) + 1
    assert vesicles["n_tethers"].sum() == (filaments["kind"] == "tether").sum()
    # the straight-path test is on by default, at the library's cuts for this tomogram's
    # contrast, which the table and the message give; off, every piece stays
    tomo = read_tomogram(files["tomogram"])
    library = find_filaments(
        tomo.data,
        read_tomogram(files["labels"]).data.astype(np.int32),
        read_tomogram(files["az_mask"]).data > 0,
        read_tomogram(files["region_mask"]).data > 0,
        tomo.voxel_size_nm,
    )
    cuts = library.path_cuts
    assert cuts == path_cuts(library.membrane_contrast)
    for kind, cut in cuts.items():
        rows = filaments[filaments["kind"] == kind]
        assert len(rows) and np.allclose(rows["path_cut"], cut)
        assert (rows["path_grey"] <= cut).all()
    assert f"connector {cuts['connector']:.2f}" in capsys.readouterr().out
    assert main([*args[:-1], str(tmp_path / "all"), "--no-path-test"]) == 0
    every = pd.read_csv(tmp_path / "all" / f"{stem}_filaments.csv")
    assert (every["path_grey"] > cuts["connector"]).any()
    assert every["path_cut"].isna().all()
    assert len(every) > len(filaments)
    strict = ["--max-path-grey", "-1.5", "--max-tether-path-grey", "-1.5"]
    assert main([*args[:-1], str(tmp_path / "strict"), *strict]) == 0
    strict = pd.read_csv(tmp_path / "strict" / f"{stem}_filaments.csv")
    assert (strict["path_grey"] <= -1.5).all() and len(strict) < len(filaments)
    # a region mask of another shape is named in the error
    bad = tmp_path / "bad.mrc"
    from analysis.io import write_mrc

    write_mrc(bad, np.ones((4, 4, 4), np.float32), 2.2)
    args[args.index("--region-mask") + 1] = str(bad)
    assert main([*args[:-1], str(tmp_path / "again")]) == 2
    assert "bad.mrc: region mask of shape (4, 4, 4)" in capsys.readouterr().err
    assert not (tmp_path / "again").exists() or not list((tmp_path / "again").iterdir())


def test_the_active_zone_command_merges_pieces_within_merge_nm(tmp_path, capsys):
    import inspect

    from analysis.active_zone import DEFAULT_MERGE_NM
    from analysis.cli import active_zone, main
    from analysis.synthetic import example_files

    files = example_files("test", seed=301, quick=True)
    args = ["active-zone", str(files["tomogram"]), "--no-path-test"]
    for role in ("labels", "az_mask", "region_mask"):
        args += [f"--{role.replace('_', '-')}", str(files[role])]
    stem, pair = files["tomogram"].stem, ["kind", "vesicle_a", "vesicle_b"]
    tables = {}
    for name, extra in (("default", []), ("touching", ["--merge-nm", "0"])):
        assert main([*args, "--out", str(tmp_path / name), *extra]) == 0
        tables[name] = pd.read_csv(tmp_path / name / f"{stem}_filaments.csv")
    merged, touching = tables["default"], tables["touching"]
    # by default one row per pair; with 0 nm the pieces of a pair that do not touch stay apart
    assert not merged.duplicated(pair).any() and merged["n_pieces"].max() > 1
    assert len(touching) > len(merged) and touching.duplicated(pair).any()
    # the same pieces, counted in more rows
    per_pair = touching.groupby(pair)["n_pieces"].sum()
    assert per_pair.to_dict() == merged.set_index(pair)["n_pieces"].to_dict()
    vesicles = pd.read_csv(tmp_path / "touching" / f"{stem}_az_vesicles.csv")
    assert vesicles["n_tethers"].sum() == (touching["kind"] == "tether").sum()
    # the command's default is the library's; a negative gap is refused
    assert inspect.signature(active_zone).parameters["merge_nm"].default == DEFAULT_MERGE_NM
    assert main([*args, "--out", str(tmp_path / "bad"), "--merge-nm", "-1"]) == 2
    assert "--merge-nm" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_one_run_gives_the_precision_recall_curve_of_shorter_threshold_series():
    from analysis.evaluate import filament_curve
    from analysis.io import read_tomogram
    from analysis.synthetic import example_files

    files = example_files("test", seed=301, quick=True)
    tomo = read_tomogram(files["tomogram"])
    inputs = (
        tomo.data,
        read_tomogram(files["labels"]).data.astype(np.int32),
        read_tomogram(files["az_mask"]).data > 0,
        read_tomogram(files["region_mask"]).data > 0,
        tomo.voxel_size_nm,
    )
    # piece by piece (unmerged): the short series finds exactly the darker pieces
    full = find_filaments(*inputs, merge_nm=None).table
    stop = -2.2
    series = [t for t in DEFAULT_THRESHOLDS if t <= stop]
    short = find_filaments(*inputs, thresholds=series, merge_nm=None)
    subset = full[full["threshold"] <= stop].reset_index(drop=True)
    columns = ["kind", "vesicle_a", "vesicle_b", "threshold", "volume_nm3"]
    pd.testing.assert_frame_equal(short.table[columns], subset[columns])
    # merged, a filament takes its darkest piece's threshold: the same pairs either way
    merged = find_filaments(*inputs).table
    pairs = ["kind", "vesicle_a", "vesicle_b", "threshold"]
    short_merged = find_filaments(*inputs, thresholds=series).table
    kept = merged[merged["threshold"] <= stop]
    assert sorted(map(tuple, short_merged[pairs].to_numpy())) == sorted(
        map(tuple, kept[pairs].to_numpy())
    )
    assert merged["n_pieces"].sum() == len(full) and merged["n_pieces"].max() > 1
    truth = pd.read_csv(files["filaments"])
    curve = filament_curve(full, truth)
    assert curve["max_threshold"].is_monotonic_increasing
    assert curve["n_found"].is_monotonic_increasing  # brighter thresholds only add filaments
    last = filament_detection(full, truth)
    assert curve.iloc[-1]["recall"] == last["recall"]
    at_stop = curve[curve["max_threshold"] <= stop].iloc[-1]
    assert at_stop["precision"] == filament_detection(short.table, truth)["precision"]
    # the same for the straight-path test: one run without it gives every cut
    every = find_filaments(*inputs, max_path_grey=None).table
    cut = -1.3
    tested = find_filaments(*inputs, max_path_grey=cut).table
    kept = every[every["path_grey"] <= cut].reset_index(drop=True)
    assert 0 < len(kept) < len(every)
    pd.testing.assert_frame_equal(tested[columns], kept[columns])
    by_path = filament_curve(every, truth, [cut], by="path_grey").iloc[0]
    assert by_path["recall"] == filament_detection(tested, truth)["recall"]
    # a cut per kind
    cuts = {"connector": -1.3, "tether": -0.6}
    tested = find_filaments(*inputs, max_path_grey=cuts).table
    kept = every[every["path_grey"] <= every["kind"].map(cuts)].reset_index(drop=True)
    assert set(kept["kind"]) == {"connector", "tether"}
    pd.testing.assert_frame_equal(tested[columns], kept[columns])


def blurred_vesicle(shape, centre, radius):
    """Labels, distance from the centre, and the image of one vesicle: its dark membrane,
    blurred, on a background of 5."""
    centre = np.asarray(centre, float)
    labels = np.zeros(shape, np.int32)
    paint_ball(labels, centre, radius, 1)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)))
    tomogram = (5.0 - np.exp(-0.5 * ((r - radius) / 1.2) ** 2)).astype(np.float32)
    return labels, r, tomogram


def test_boundary_images_are_removed_also_where_the_volume_cuts_the_vesicle():
    from analysis.active_zone import remove_boundary_profiles

    # a vesicle filling a thin volume: its outer shells hold no polar voxels (this crashed)
    shape = (20, 60, 60)
    labels, r, tomogram = blurred_vesicle(shape, [9.5, 30.0, 30.0], 8.0)
    az = np.zeros(shape, bool)
    az[:, -1, :] = True
    cleaned = remove_boundary_profiles(tomogram, labels, az, 1.0, reach_nm=10.0)
    near = (r > 6) & (r < 12)
    assert np.abs(tomogram[near] - 5.0).max() > 0.9  # the membrane was there …
    # … and is gone (but for the 0.5-voxel binning of its steep edges); the background stays
    assert np.abs(cleaned[near] - 5.0).max() < 0.25
    assert abs(np.median(cleaned[near]) - 5.0) < 0.02


def test_the_boundary_images_reach_a_length_in_nm():
    from analysis.active_zone import remove_boundary_profiles

    shape = (30, 40, 40)
    labels, r, tomogram = blurred_vesicle(shape, [15.0, 20.0, 20.0], 6.0)
    az = np.zeros(shape, bool)
    az[:, -1, :] = True
    # the default 22 nm is 11 voxels of 2 nm, 10 of 2.2 nm
    at_2nm = remove_boundary_profiles(tomogram, labels, az, 2.0)
    np.testing.assert_array_equal(
        at_2nm, remove_boundary_profiles(tomogram, labels, az, 1.0, reach_nm=11.0)
    )
    assert not np.array_equal(at_2nm, remove_boundary_profiles(tomogram, labels, az, 2.2))
    np.testing.assert_array_equal(
        remove_boundary_profiles(tomogram, labels, az, 2.2),
        remove_boundary_profiles(tomogram, labels, az, 1.0, reach_nm=10.0),
    )


def test_the_membrane_profile_is_measured_in_the_cytoplasm_alone():
    from analysis.active_zone import remove_boundary_profiles

    # a flat membrane (y 18-19) with the postsynaptic one 8 voxels beyond it in the cleft, and
    # a dense vesicle 2-14 voxels from it on the cytoplasm's side (y > 19)
    shape = (24, 48, 48)
    y = np.arange(shape[1])[None, :, None]
    dips = sum(np.exp(-0.5 * ((y - at) / 1.2) ** 2) for at in (18.5, 10.5))
    tomogram = np.broadcast_to(5.0 - dips, shape).astype(np.float32).copy()
    az = np.broadcast_to((y >= 18) & (y <= 19), shape).copy()
    region = np.broadcast_to(y > 19, shape).copy()
    labels = np.zeros(shape, np.int32)
    paint_ball(labels, np.array([12.0, 28.0, 24.0]), 6.0, 1)
    tomogram[labels > 0] = 4.0
    x = np.arange(shape[2])[None, None, :]
    far = np.broadcast_to((x < 6) | (x > 42), shape)  # out of the vesicle's own reach
    cleaned = remove_boundary_profiles(tomogram, labels, az, 1.0, reach_nm=10.0, region_mask=region)
    both_sides = remove_boundary_profiles(tomogram, labels, az, 1.0, reach_nm=10.0)
    assert tomogram[far & (np.broadcast_to(y, shape) == 20)].mean() < 4.6  # its image was there
    for depth in range(1, 11):  # shells of the cytoplasm, one voxel each: it is gone
        shell = far & (np.broadcast_to(y, shape) == 19 + depth)
        assert abs(cleaned[shell].mean() - 5.0) < 0.05
    # measured on both sides, the cleft's membrane lightens the cytoplasm as far from the
    # membrane as it lies beyond it (7.5 voxels): where tethers are
    lighter = [both_sides[far & (np.broadcast_to(y, shape) == 19 + d)].mean() for d in (7, 8)]
    assert max(lighter) - 5.0 > 0.15  # half its depth: the two sides are averaged


def test_straight_paths_span_the_gap_between_two_spheres():
    from analysis.active_zone.paths import connector_paths, disc_offsets, mean_along

    # centres 20 voxels apart on x, radii 6 and 8: a gap of 6 voxels from x = 16 to 22
    a, b = np.array([15.0, 20.0, 10.0]), np.array([15.0, 20.0, 30.0])
    paths = connector_paths(a, 6.0, b, 8.0, search_vox=2.0)
    assert len(disc_offsets([0, 0, 1.0], 2.0)) == 13  # the one-voxel grid within 2 voxels
    assert len(paths) == 13
    start, end = paths[0]  # the centre line comes first
    np.testing.assert_allclose(start, [15, 20, 16], atol=1e-9)
    np.testing.assert_allclose(end, [15, 20, 22], atol=1e-9)
    for start, end in paths:  # off the axis each sphere recedes, so the gap widens
        assert np.linalg.norm(start - a) == pytest.approx(6.0)
        assert np.linalg.norm(end - b) == pytest.approx(8.0)
        assert end[2] - start[2] >= 6.0 - 1e-9
        assert np.allclose((end - start)[:2], 0)  # parallel to the centre line
    ramp = np.broadcast_to(np.arange(40.0), (30, 40, 40))  # value = x
    assert mean_along(ramp, *paths[0]) == pytest.approx(19.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_paths_exist_whichever_axis_the_spheres_are_stacked_on(axis):
    from analysis.active_zone.paths import connector_paths, disc_offsets

    # two radius-5 spheres 14 voxels apart along one axis: a 4-voxel gap (stacked on z, the
    # disc's basis was once NaN and the pair had no path at all)
    a = np.array([20.0, 20.0, 20.0])
    b = a + 14.0 * np.eye(3)[axis]
    offsets = disc_offsets(np.eye(3)[axis], 2.0)
    assert np.isfinite(offsets).all() and len(offsets) == 13
    np.testing.assert_allclose(offsets @ np.eye(3)[axis], 0, atol=1e-12)  # in the disc's plane
    lengths = sorted(np.linalg.norm(e - s) for s, e in connector_paths(a, 5.0, b, 5.0, 2.0))
    assert len(lengths) == 13 and lengths[0] == pytest.approx(4.0)


def test_without_a_membrane_within_reach_only_the_vesicle_images_are_removed():
    from analysis.active_zone import remove_boundary_profiles

    shape = (30, 40, 40)
    labels, r, tomogram = blurred_vesicle(shape, [15.0, 20.0, 20.0], 6.0)
    no_membrane = np.zeros(shape, bool)  # this crashed (an empty distance profile)
    cleaned = remove_boundary_profiles(tomogram, labels, no_membrane, 1.0, reach_nm=10.0)
    near = (r > 4) & (r < 10)
    assert np.abs(cleaned[near] - 5.0).max() < 0.25


def test_tether_paths_run_down_to_the_membrane():
    from analysis.active_zone.paths import tether_paths

    az, region, labels, table = flat_synapse([((15, 24.0, 12), 5.0)])
    distance = az_distance_map(az, 1.0)
    paths = tether_paths(np.array([15.0, 24.0, 12.0]), 5.0, distance, 1.0, max_length_vox=20)
    assert len(paths) == 5
    start, end = paths[0]
    np.testing.assert_allclose(start, [15, 19, 12], atol=1e-6)  # the sphere's lowest point
    np.testing.assert_allclose(end, [15, 11, 12], atol=1e-6)  # next to the membrane (y = 10)
    for start, end in paths:
        assert np.allclose((end - start)[[0, 2]], 0)  # straight down the membrane's normal
    # a membrane out of reach gives no path
    assert tether_paths(np.array([15.0, 24.0, 12.0]), 5.0, distance, 1.0, 5.0) == []


@pytest.mark.parametrize("offset, kept", [(2, True), (4, False)])
def test_the_path_test_keeps_filaments_that_cross_the_gap_near_the_closest_approach(offset, kept):
    # Two balls with a 6-voxel gap on x; a dark rod joins them parallel to their centre line,
    # ``offset`` voxels off it. Within the search (4.4 nm = 2.2 voxels) a straight path runs
    # along the rod; 4 voxels off, none does, and the piece is as noise would make it.
    balls = [((15, 30.0, 10), 6.0), ((15, 30.0, 28), 6.0)]
    az, region, labels, table = flat_synapse(balls)
    rng = np.random.default_rng(1)
    tomo = rng.normal(0, 1.0, SHAPE).astype(np.float32)
    tomo[labels > 0] = 1.0
    z = 15 + offset
    x0 = 10 + np.sqrt(36 - offset**2)  # where the line z = 15 + offset leaves ball 1
    _rod(tomo, (z, 30, x0 - 1), (z, 30, 38 - x0 + 1), -3.0, radius=1.0)
    options = dict(smooth_nm=0.0, thresholds=np.arange(-2.0, -0.95, 0.1), subtract_boundaries=False)
    plain = find_filaments(tomo, labels, az, region, VS, max_path_grey=None, **options)
    assert (plain.table["kind"] == "connector").any()  # thresholding alone finds it either way
    tested = find_filaments(tomo, labels, az, region, VS, **options)
    assert ((tested.table["kind"] == "connector").any()) == kept
    if kept:  # along the rod: about its darkness, in SD of the region
        assert tested.table["path_grey"].min() < -1.5
    assert plain.table["path_grey"].min() > -1.0 or kept
