"""The command line: real files in, exit codes and one-line errors out."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from analysis.cli import EXIT_BAD_INPUT, main
from analysis.io import read_tomogram, write_mrc, write_vesicle_model
from analysis.synthetic import example_files


def test_mod2labels_writes_one_label_per_vesicle(tmp_path, capsys):
    tomo = write_mrc(tmp_path / "t.mrc", np.zeros((20, 30, 30), np.float32), 2.0)
    centres = np.array([[10.0, 8.0, 8.0], [10.0, 20.0, 20.0]])
    model = write_vesicle_model(tmp_path / "v.mod", centres, np.array([4.0, 5.0]), 2.0)
    out = tmp_path / "labels.mrc"
    assert main(["mod2labels", str(model), "--like", str(tomo), "--out", str(out)]) == 0
    labels = read_tomogram(out).data
    assert labels.shape == (20, 30, 30)
    assert labels[10, 8, 8] == 1 and labels[10, 20, 20] == 2
    assert "2 vesicles" in capsys.readouterr().out


def test_bad_input_exits_non_zero_with_one_line_and_no_output(tmp_path):
    tomo = write_mrc(tmp_path / "t.mrc", np.zeros((4, 5, 6), np.float32), 2.0)
    model = write_vesicle_model(tmp_path / "v.mod", np.array([[10.0, 20.0, 30.0]]), [3.0], 2.0)
    out = tmp_path / "labels.mrc"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.cli",
            "mod2labels",
            str(model),
            "--like",
            str(tomo),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {model}")
    assert "outside the tomogram" in lines[0]
    assert not out.exists()


def test_info_reports_voxel_size(tmp_path, capsys):
    tomo = write_mrc(tmp_path / "t.mrc", np.ones((4, 5, 6), np.float32), 1.469)
    assert main(["info", str(tomo)]) == 0
    assert "1.469" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing.mrc")]) == EXIT_BAD_INPUT


def test_info_says_how_the_file_was_read(tmp_path, capsys):
    import mrcfile

    path = tmp_path / "byte.rec"
    with mrcfile.new(path) as mrc:  # IMOD's unsigned bytes: imodStamp set, imodFlags bit 0 clear
        mrc.set_data(np.full((4, 5, 6), 200, np.uint8).view(np.int8))
        mrc.voxel_size = 14.69
        mrc.header.origin.x = 50.0
    raw = bytearray(path.read_bytes())
    raw[152:160] = np.array([1146047817, 0], "<i4").tobytes()
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    # each line is a 15-character key, a space, and the value
    lines = {ln[:15].strip(): ln[16:] for ln in capsys.readouterr().out.splitlines()}
    assert lines["min/mean/max"].startswith("200 / 200 / 200")
    assert lines["data"] == "bytes, unsigned (IMOD stamp, imodFlags bit 0 clear)"
    assert lines["axis order"] == "columns x, rows y, sections z"
    assert lines["extended header"] == "none"
    assert lines["origin"] == "(x, y, z) = (50, 0, 0) Å"
    assert lines["voxel size"].startswith("1.469 nm from the MRC header")


def test_synth_writes_the_design_file_names(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--n", "2", "--shape", "32", "64", "64", "--seed", "7"]) == 0
    for stem in ("synthetic_01", "synthetic_02"):
        for suffix in (
            ".mrc",
            "_labels.mrc",
            "_manual.mod",
            "_vesicles.csv",
            "_az_mask.mrc",
            "_filaments.csv",
        ):
            assert (out / f"{stem}{suffix}").exists(), f"{stem}{suffix}"
    tomo = read_tomogram(out / "synthetic_01.mrc")
    assert tomo.shape == (32, 64, 64) and tomo.voxel_size_nm == 2.2
    assert main(["synth", str(tmp_path / "no" / "such" / "dir")]) == EXIT_BAD_INPUT


def test_synth_varied_writes_tomograms_of_their_own_conditions(tmp_path, capsys):
    import json

    out = tmp_path / "varied"
    args = ["synth", str(out), "--varied", "--n", "2", "--shape", "32", "64", "64"]
    assert main([*args, "--seed", "10001", "--voxel-size-nm", "2.5"]) == 0
    drawn = [json.loads((out / f"synthetic_0{i}_conditions.json").read_text()) for i in (1, 2)]
    assert [d["seed"] for d in drawn] == [10001, 10002]
    assert drawn[0]["microscope.defocus_um"] != drawn[1]["microscope.defocus_um"]
    for i in (1, 2):
        tomo = read_tomogram(out / f"synthetic_0{i}.mrc")
        labels = read_tomogram(out / f"synthetic_0{i}_labels.mrc", check_finite=False)
        assert tomo.shape == labels.shape == (32, 64, 64) and tomo.voxel_size_nm == 2.5
        table = pd.read_csv(out / f"synthetic_0{i}_vesicles.csv")
        assert set(np.unique(labels.data)) - {0} <= set(table["vesicle_id"])


def test_train_then_resume_from_the_command_line(tmp_path, capsys):
    from analysis.models import read_checkpoint
    from analysis.synthetic import example_files

    files = example_files("cli", seed=4, quick=True, outdir=tmp_path)
    out = tmp_path / "m.pt"
    args = [
        "train",
        str(out),
        "--tomogram",
        str(files["tomogram"]),
        "--labels",
        str(files["manual"]),
        "--val-tomogram",
        str(files["tomogram"]),
        "--val-labels",
        str(files["labels"]),
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "1",
        "--patch-size",
        "16",
        "--depth",
        "1",
        "--base-channels",
        "4",
    ]
    assert main(args) == 0
    ckpt = read_checkpoint(out)
    assert ckpt["epoch"] == 2 and ckpt["voxel_size_nm"] == 2.2
    assert ckpt["data"]["train"] == [files["tomogram"].name]
    # the checkpoint says how it was made
    assert ckpt["data"]["command"].startswith(f"analysis train {out} --tomogram ")
    assert ckpt["data"]["command"].endswith("--base-channels 4")
    assert main([*args, "--resume", "--epochs", "3"]) == 0
    assert read_checkpoint(out)["epoch"] == 3
    assert "validation Dice" in capsys.readouterr().out
    assert main(["train", str(out), "--tomogram", str(files["tomogram"])]) == EXIT_BAD_INPUT
    # fine-tuning from the checkpoint, with the loss restricted to an annotated region
    tuned = tmp_path / "tuned.pt"
    assert (
        main(
            [
                *args[:1],
                str(tuned),
                *args[2:],
                "--region",
                str(files["region_mask"]),
                "--init-from",
                str(out),
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    assert (
        read_checkpoint(tuned)["config"]["base_channels"] == 4
    )  # the architecture it started from
    # and which network it started from, by path and by content
    started = read_checkpoint(tuned)["data"]["init_from"]
    assert started.startswith(str(out)) and "(SHA-256 " in started
    # and how that network was made: a chain of fine-tunings keeps its history
    from analysis.models import provenance

    steps = provenance(read_checkpoint(tuned))
    assert [s["step"] for s in steps] == ["", "start"]
    assert steps[1]["command"] == read_checkpoint(out)["data"]["command"]
    assert "--init-from" in steps[0]["command"]
    # and their learning curves: the start's three epochs, then the fine-tuning's one
    from analysis.models import training_history

    runs = [(row["run"], row["epoch"]) for row in training_history(read_checkpoint(tuned))]
    assert runs == [("final step", 1), ("start", 1), ("start", 2), ("start", 3)]
    # resumed without --init-from, it still knows where it started
    assert main([*args[:1], str(tuned), *args[2:], "--resume", "--epochs", "2"]) == 0
    assert [s["step"] for s in provenance(read_checkpoint(tuned))] == ["", "start"]
    assert read_checkpoint(tuned)["data"]["init_from"] == started


def test_train_on_the_synthetic_set_records_the_generator_versions(tmp_path, monkeypatch):
    """--synthetic (and --varied) name the generator versions that drew the data, as file names
    do not. The data sets are stood in for by one small file set, so that nothing is generated."""
    import analysis.synthetic as synthetic
    import analysis.synthetic.variety as variety
    from analysis.models import read_checkpoint

    files = example_files("cli", seed=4, quick=True, outdir=tmp_path)
    asked = []
    monkeypatch.setattr(
        synthetic, "sample_dataset", lambda quick: {"train": [files], "validation": [files]}
    )
    monkeypatch.setattr(
        variety, "varied_dataset", lambda split, n, quick: asked.append((split, n)) or [files]
    )
    tiny = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--patch-size", "16"]
    tiny += ["--depth", "1", "--base-channels", "4"]
    plain, varied = tmp_path / "plain.pt", tmp_path / "varied.pt"
    assert main(["train", str(plain), "--synthetic", "--quick", *tiny]) == 0
    assert main(["train", str(varied), "--synthetic", "--quick", "--varied", "40", *tiny]) == 0
    only = read_checkpoint(plain)["data"]["generator"]
    both = read_checkpoint(varied)["data"]["generator"]
    assert only == f"analysis.synthetic v{synthetic.GENERATOR_VERSION}"
    assert both == f"{only} and analysis.synthetic.variety v{variety.VARIED_VERSION}"
    # a twentieth as many varied tomograms join the validation set
    assert asked == [("train", 40), ("validation", 2)]
    assert read_checkpoint(varied)["data"]["train"] == [files["tomogram"].name] * 2
    faint = tmp_path / "faint.pt"
    asked.clear()
    args = ["train", str(faint), "--synthetic", "--quick", "--varied", "40", "--faint", "7"]
    assert main([*args, *tiny]) == 0
    assert asked == [("train", 40), ("validation", 2), ("faint", 7)]
    assert read_checkpoint(faint)["data"]["generator"] == f"{both} (faint tier: 7)"
    assert read_checkpoint(faint)["data"]["train"] == [files["tomogram"].name] * 3


def test_predict_writes_a_probability_map_and_refuses_a_voxel_size_in_angstrom(tmp_path, capsys):
    from analysis.synthetic import example_files

    files = example_files("test", seed=301, quick=True)
    out = tmp_path / "prob.mrc"
    args = ["predict", str(files["tomogram"]), "--out", str(out), "--quiet"]
    assert main(args) == 0
    prob = read_tomogram(out)
    truth = read_tomogram(files["labels"]).data > 0
    assert (
        prob.shape == truth.shape
        and prob.voxel_size_nm == read_tomogram(files["tomogram"]).voxel_size_nm
    )
    assert 2 * ((prob.data > 0.5) & truth).sum() / ((prob.data > 0.5).sum() + truth.sum()) > 0.95
    out.unlink()
    capsys.readouterr()
    assert main([*args, "--voxel-size-nm", "22"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Å taken for nm" in err and str(files["tomogram"]) in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_segment_writes_every_output_and_a_failure_leaves_the_folder_as_it_was(
    segmented_example, tmp_path, capsys
):
    import shutil

    import pandas as pd

    files = segmented_example.files  # segmented with --az-mask and --region-mask
    out = shutil.copytree(segmented_example.out, tmp_path / "seg")
    stem = files["tomogram"].stem
    suffixes = ["_probability.mrc", "_labels.mrc", "_vesicles.csv", "_vesicles.mod"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{s}" for s in [*suffixes, "_pyto_labels.mrc", "_check.json"]
    )
    table = pd.read_csv(out / f"{stem}_vesicles.csv")
    truth = pd.read_csv(files["vesicles"])
    assert abs(int(table["kept"].sum()) - len(truth)) <= 2
    pyto = read_tomogram(out / f"{stem}_pyto_labels.mrc").data
    assert {1, 2, 10}.issubset(set(np.unique(pyto).astype(int)))
    assert f"{int(table['kept'].sum())} vesicles kept" in segmented_example.stdout

    # A tomogram of noise holds no vesicle: one line naming it, exit 2, earlier results intact.
    noise = np.random.default_rng(0).normal(size=(48, 64, 64)).astype(np.float32)
    bad = write_mrc(out / f"{stem}.mrc", noise, 2.2)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["segment", str(bad), "--out", str(out), "--quiet"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("warning: no voxel has a vesicle probability")
    assert len(err) == 2 and str(bad) in err[1] and "nothing to segment" in err[1]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_an_imod_byte_tomogram_gives_the_vesicles_of_its_float_original(tmp_path, capsys):
    """IMOD's 8-bit export (unsigned bytes, as trimvol -byte writes them) of the quick example
    (generator v3, seed 301, SNR 0.5 per tilt, -8 µm defocus), segmented by the shipped network:
    the same vesicles as from the float32 original, and every MRC output keeps the origin."""
    import mrcfile
    import pandas as pd

    from analysis.evaluate import detection_scores, match_vesicles
    from analysis.synthetic import example_files

    original = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    origin = (1000.0, -500.0, 250.0)  # Å, as a trimmed subvolume has
    floats = write_mrc(
        tmp_path / "float.mrc", original.data, original.voxel_size_nm, origin_angstrom=origin
    )
    lo, hi = np.percentile(original.data, [0.1, 99.9])
    scaled = np.clip(28 + (original.data - lo) / (hi - lo) * 200, 0, 255)
    byte = tmp_path / "byte.rec"
    with mrcfile.new(byte) as mrc:
        mrc.set_data(np.round(scaled).astype(np.uint8).view(np.int8))
        mrc.voxel_size = original.voxel_size_nm * 10
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
    raw = bytearray(byte.read_bytes())
    raw[152:160] = np.array([1146047817, 0], "<i4").tobytes()  # imodStamp, imodFlags bit 0 clear
    byte.write_bytes(bytes(raw))

    tables = {}
    for path in (floats, byte):
        out = tmp_path / path.stem
        assert main(["segment", str(path), "--out", str(out), "--quiet"]) == 0
        table = pd.read_csv(out / f"{path.stem}_vesicles.csv")
        tables[path.stem] = table[table["kept"]]
        for name in ("probability", "labels", "pyto_labels"):
            assert read_tomogram(out / f"{path.stem}_{name}.mrc").origin_angstrom == origin
    matches = match_vesicles(tables["byte"], tables["float"], original.voxel_size_nm)
    scores = detection_scores(matches, len(tables["float"]), len(tables["byte"]))
    assert len(tables["float"]) > 10 and scores["f1"] == 1.0


def test_segment_then_evaluate_against_the_manual_model_round_trip(
    segmented_example, tmp_path, capsys
):
    import json

    files, done = segmented_example.files, segmented_example.out
    stem = files["tomogram"].stem
    args = ["evaluate", "--pred", str(done / f"{stem}_labels.mrc"), "--json"]
    args += ["--truth", str(files["manual"]), "--mask", str(files["region_mask"])]
    args += ["--probability", str(done / f"{stem}_probability.mrc")]
    args += ["--table", str(done / f"{stem}_vesicles.csv")]
    assert main(args) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) >= {
        "dice",
        "mask_dice",
        "precision",
        "recall",
        "f1",
        "delta_d",
        "delta_c_nm",
        "n_true",
        "n_pred",
    }
    assert scores["f1"] > 0.95 and scores["dice"] > 0.85 and scores["delta_c_nm"] < 1.5
    # Against the exact truth labels instead of the manual outlines, without a probability map.
    args = [
        "evaluate",
        "--pred",
        str(done / f"{stem}_labels.mrc"),
        "--truth",
        str(files["labels"]),
        "--json",
    ]
    assert main(args) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["mask_dice"] is None and scores["dice"] > 0.95
    assert (
        main(
            ["evaluate", "--pred", str(files["tomogram"]), "--truth", str(tmp_path / "missing.mod")]
        )
        == EXIT_BAD_INPUT
    )
    assert "missing.mod" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    from analysis.cli import app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert {"segment", "evaluate", "batch", "predict", "train", "synth", "mod2labels"} <= {
        n.replace("_command", "") for n in names
    }
    for name in names:
        command = name.replace("_command", "")
        assert main([command, "--help"]) == 0, command
        assert "Usage" in capsys.readouterr().out


def test_usage_errors_are_one_message_without_a_traceback(tmp_path, capsys):
    tomo = tmp_path / "t.mrc"
    write_mrc(tomo, np.zeros((8, 16, 16), np.float32), 2.2)
    cases = [
        (["predict", str(tomo)], "Missing option '--out'"),
        (["predict", str(tomo), "--out", str(tmp_path / "p.mrc"), "--overlap", "0.5"], "--tile"),
        (["segment", str(tomo), "--out", str(tmp_path), "--overlap", "0.5"], "--tile"),
    ]
    # The first as a process exits, the others in this one (main returns the exit code).
    argv, phrase = cases[0]
    result = subprocess.run(
        [sys.executable, "-m", "analysis.cli", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    assert phrase in result.stderr and "Traceback" not in result.stderr
    for argv, phrase in cases[1:]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]


def test_average_weights_command_writes_the_mean_network(tmp_path, capsys):
    import torch

    from analysis.models import UNet3D, UNetConfig, read_checkpoint, save_checkpoint

    config = UNetConfig(depth=2, base_channels=4)
    kw = dict(voxel_size_nm=2.2, normalisation={}, seed=0, data={})
    paths = [str(save_checkpoint(tmp_path / f"{i}.pt", UNet3D(config), **kw)) for i in range(2)]
    out = tmp_path / "soup.pt"
    assert main(["average-weights", *paths, "--out", str(out)]) == 0
    assert "mean of 2 networks" in capsys.readouterr().out
    soup = read_checkpoint(out)["model_state"]
    key = next(k for k, v in soup.items() if v.is_floating_point())
    parts = [read_checkpoint(p)["model_state"][key] for p in paths]
    torch.testing.assert_close(soup[key], (parts[0] + parts[1]) / 2)
    assert read_checkpoint(out)["data"]["command"].startswith("analysis average-weights ")
    # one checkpoint is not a soup: one line, non-zero exit, nothing written
    assert main(["average-weights", paths[0], "--out", str(tmp_path / "x.pt")]) == EXIT_BAD_INPUT
    assert not (tmp_path / "x.pt").exists()
