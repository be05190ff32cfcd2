"""Study tables (checked before any work), the study generator's truth, and `analysis compare`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import stats
from analysis.batch import run_study
from analysis.cli import EXIT_BAD_INPUT, main
from analysis.errors import InputFileError
from analysis.io import write_mrc
from analysis.synthetic import QUICK_GEOMETRY, SynapseGeometry


def _study(folder: Path, groups=("wt", "wt", "ko", "ko"), sizes=None, **columns) -> Path:
    """A study table over tiny tomograms (and masks) written into ``folder``."""
    sizes = sizes or [2.2] * len(groups)
    rows = []
    for i, (group, size) in enumerate(zip(groups, sizes, strict=True)):
        name = f"{group}{i}"
        write_mrc(folder / f"{name}.mrc", np.zeros((4, 5, 6), np.float32), size)
        for mask in ("az", "region"):
            write_mrc(folder / f"{name}_{mask}.mrc", np.ones((4, 5, 6), np.uint8), size)
        rows.append(
            {
                "tomogram": f"{name}.mrc",
                "group": group,
                "az_mask": f"{name}_az.mrc",
                "region_mask": f"{name}_region.mrc",
            }
        )
    table = pd.DataFrame(rows)
    for column, values in columns.items():
        table[column] = values
    path = folder / "study.csv"
    table.to_csv(path, index=False)
    return path


def test_a_good_study_table_resolves_paths_and_reads_voxel_sizes(tmp_path):
    study = stats.read_study(_study(tmp_path))
    assert study["stem"].tolist() == ["wt0", "wt1", "ko2", "ko3"]
    assert Path(study["tomogram"][0]) == tmp_path / "wt0.mrc"
    assert study["voxel_size_nm"].tolist() == pytest.approx([2.2] * 4)
    items = stats.study_items(study)
    assert set(items[0]) == {"tomogram", "group", "az_mask", "region_mask", "voxel_size_nm"}


def _missing_file(d):
    path = _study(d)
    (d / "ko3_az.mrc").unlink()
    return path, "file not found: " + str(d / "ko3_az.mrc")


def _one_group(d):
    return _study(d, groups=("wt", "wt", "wt")), "one group only ('wt')"


def _three_groups(d):
    return _study(d, groups=("wt", "wt", "ko", "ko", "het", "het")), "3 groups"


def _mixed_voxel_sizes(d):
    return _study(d, sizes=[2.2, 2.2, 1.1, 2.2]), "mixed voxel sizes (2.2 nm"


def _group_of_one(d):
    return _study(d, groups=("wt", "wt", "ko")), "group 'ko' has 1 tomogram(s)"


def _missing_column(d):
    path = _study(d)
    pd.read_csv(path).drop(columns="region_mask").to_csv(path, index=False)
    return path, "missing column(s) region_mask"


def _labels_missing(d):
    return _study(d, labels=["a.mrc", "", "", ""]), "file not found: " + str(d / "a.mrc")


STUDY_ERRORS = [
    _missing_file,
    _one_group,
    _three_groups,
    _mixed_voxel_sizes,
    _group_of_one,
    _missing_column,
    _labels_missing,
]


@pytest.mark.parametrize("case", STUDY_ERRORS, ids=[c.__name__[1:] for c in STUDY_ERRORS])
def test_a_bad_study_is_one_clear_error_from_the_command_before_any_work(case, tmp_path, capsys):
    path, phrase = case(tmp_path)
    with pytest.raises(InputFileError, match="study.csv"):
        stats.read_study(path)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["compare", str(path), "--out", str(out)]) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), lines
    assert phrase in lines[0]
    assert not out.exists()  # checked before the output folder is made


def test_an_output_folder_that_would_overwrite_an_input_is_refused(tmp_path, capsys):
    path = _study(tmp_path)
    labels = tmp_path / "wt0_labels.mrc"  # the name segment would give wt0's labels
    write_mrc(labels, np.zeros((4, 5, 6), np.int32), 2.2)
    table = pd.read_csv(path)
    table["labels"] = ["wt0_labels.mrc", "", "", ""]
    table.to_csv(path, index=False)
    assert main(["compare", str(path), "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"error: {labels}: is an input of the study" in err


def test_a_finished_tomogram_is_not_analysed_again(tmp_path):
    items = stats.study_items(stats.read_study(_study(tmp_path)))
    out = tmp_path / "out"
    out.mkdir()
    for item in items:  # every active-zone table present: nothing to do, no cluster started
        stem = Path(item["tomogram"]).stem
        for suffix in ("_az_vesicles.csv", "_layers.csv", "_proximal.csv", "_filaments.csv"):
            (out / f"{stem}{suffix}").write_text("x\n")
        (out / f"{stem}_filaments.mrc").write_text("x")
    summary = run_study(items, out, progress=False)
    assert summary["status"].tolist() == ["skipped"] * 4
    assert (out / "study_summary.csv").exists()


def test_truth_vesicles_measure_gaps_as_the_generator_places_tethers():
    vesicles = pd.DataFrame(
        {
            "vesicle_id": [1, 2, 3],
            "radius_nm": [20.0, 20.0, 18.0],
            "az_distance_nm": [30.0, 21.0, 100.0],
            "membrane_thickness_nm": 4.0,
        }
    )
    filaments = pd.DataFrame(
        {
            "kind": ["tether", "connector", "connector"],
            "vesicle_a": [1, 1, 1],
            "vesicle_b": [0, 2, 2],
        }
    )
    truth = stats.truth_vesicles(vesicles, filaments).set_index("vesicle_id")
    assert truth["az_membrane_distance_nm"].tolist() == [8.0, 0.0, 80.0]
    assert truth["n_tethers"].tolist() == [1, 0, 0]
    assert truth["n_connectors"].tolist() == [2, 2, 0]
    assert truth["n_connected_vesicles"].tolist() == [1, 1, 0]


def test_synapses_vary_around_their_group_means_and_keep_their_draws():
    base = SynapseGeometry(**QUICK_GEOMETRY)
    spec = stats.GroupSpec("ko", tether_fraction=0.8, fraction_logit_sd=0.5)
    drawn = stats.draw_geometries(spec, 300, base, seed=(1, 2))
    fractions = np.array([d["tether_fraction"] for _, _, d in drawn])
    assert 0.74 < np.median(fractions) < 0.86 and fractions.std() > 0.03
    counts = np.array([g.n_vesicles for g, _, _ in drawn])
    assert abs(counts.mean() - 40) < 2 and counts.std() > 3
    again = stats.draw_geometries(spec, 3, base, seed=(1, 2))
    assert [s for _, s, _ in again] == [s for _, s, _ in drawn[:3]]
    assert len({s for _, s, _ in drawn}) == 300


def test_phantom_tables_are_the_truth_of_the_study_generator():
    tables = stats.phantom_tables(
        [stats.GroupSpec("wt"), stats.GroupSpec("ko", n_vesicles=20)], 2, quick=True, seed=3
    )
    vesicles = tables["vesicles"]
    assert vesicles["tomogram"].unique().tolist() == ["wt_01", "wt_02", "ko_01", "ko_02"]
    per = vesicles.groupby("group", sort=False).size() / 2
    assert per["ko"] < per["wt"]
    # a tether only where the generator allows it: within 14 nm of the membrane
    assert vesicles.loc[vesicles["n_tethers"] > 0, "az_membrane_distance_nm"].max() <= 14.0
