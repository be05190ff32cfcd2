"""Bad input, end to end through the command line: one clear line, exit ≠ 0, nothing written.

Each case builds its bad file(s) in a temporary folder and runs one ``analysis`` command on
them. Every case must end with exit code 2 (bad input), a single ``error:`` line on stderr
that names the file at fault and says what is wrong (``warning:`` lines may precede it), no
traceback, and no output file — not even a temporary one.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from analysis.cli import EXIT_BAD_INPUT, main
from analysis.io import write_mrc, write_vesicle_model

VS = 2.2
SHAPE = (16, 24, 24)


def _tomogram(folder: Path, name="t.mrc", data=None, voxel_size_nm=VS) -> Path:
    if data is None:
        data = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    return write_mrc(folder / name, data, voxel_size_nm)


def _raw_mrc(folder: Path, name: str, data: np.ndarray, voxel_size_angstrom=22.0) -> Path:
    """An MRC written directly with mrcfile, for modes and headers write_mrc refuses."""
    path = folder / name
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size_angstrom
    return path


# Each builder returns (argv, the file the error must name, a phrase the error must contain).


def not_an_mrc(d):
    (d / "notes.mrc").write_text("these are my notes, not a tomogram\n" * 50)
    return ["info", str(d / "notes.mrc")], d / "notes.mrc", "not an MRC file"


def truncated_mrc(d):
    path = _tomogram(d)
    path.write_bytes(path.read_bytes()[: 1024 + 1000])
    return ["info", str(path)], path, "truncated"


def wrong_mode(d):
    path = _tomogram(d)
    raw = bytearray(path.read_bytes())
    raw[12:16] = np.int32(7).tobytes()  # mode 7 does not exist
    path.write_bytes(bytes(raw))
    return ["info", str(path)], path, "mode"


def complex_data(d):
    data = (np.ones(SHAPE) + 1j).astype(np.complex64)
    path = _raw_mrc(d, "c.mrc", data)
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "complex"


def rgb_data(d):
    # mrcfile cannot write mode 16; write the bytes as uint8 and relabel the header
    nz, ny, nx = SHAPE
    path = _raw_mrc(d, "rgb.mrc", np.zeros((nz, ny, 3 * nx), np.uint8))
    raw = bytearray(path.read_bytes())
    raw[0:4] = np.int32(nx).tobytes()
    raw[12:16] = np.int32(16).tobytes()
    path.write_bytes(bytes(raw))
    return ["info", str(path)], path, "RGB"


def two_d_image(d):
    path = _raw_mrc(d, "img.mrc", np.zeros((24, 24), np.float32))
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "2-D"


def nan_voxels(d):
    data = np.zeros(SHAPE, np.float32)
    data[3, 4, 5] = np.nan
    path = _raw_mrc(d, "nan.mrc", data)
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "NaN"


def inf_voxels(d):
    data = np.zeros(SHAPE, np.float32)
    data[1, 1, 1] = np.inf
    path = _raw_mrc(d, "inf.mrc", data)
    return ["info", str(path)], path, "infinite"


def constant_tomogram(d):
    path = _tomogram(d, data=np.full(SHAPE, 3.0, np.float32))
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "constant"


def zero_voxel_size(d):
    path = _raw_mrc(d, "z.mrc", np.zeros(SHAPE, np.float32), voxel_size_angstrom=0.0)
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "voxel size"


def anisotropic_voxel_size(d):
    path = _raw_mrc(d, "a.mrc", np.zeros(SHAPE, np.float32))
    with mrcfile.open(path, "r+") as mrc:
        mrc.voxel_size = (22.0, 22.0, 44.0)
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "anisotropic"


def angstrom_as_nm(d):
    path = _tomogram(d, voxel_size_nm=22.0)  # a header meant as 2.2 nm, written as 22
    return ["predict", str(path), "--out", str(d / "p.mrc")], path, "Å taken for nm"


def negative_voxel_size_option(d):
    path = _tomogram(d)
    argv = ["predict", str(path), "--out", str(d / "p.mrc"), "--voxel-size-nm", "-1"]
    return argv, path, "must be a positive number"


def huge_header_dimensions(d):
    path = _tomogram(d)
    raw = bytearray(path.read_bytes())
    raw[0:4] = np.int32(100_000).tobytes()  # nx far beyond the data in the file
    path.write_bytes(bytes(raw))
    return ["info", str(path)], path, "truncated"


def tilt_series_given(d):
    path = _tomogram(d, name="TS_01.st")  # IMOD's raw tilt-series stack
    return ["segment", str(path), "--out", str(d / "out")], path, "is a tilt series"


def tilt_series_by_extended_header(d):
    # a SerialEM stack: extended header with a tilt angle per section (nreal bit 0)
    data = np.zeros(SHAPE, np.float32)
    angles = np.linspace(-60, 60, SHAPE[0]) * 100
    with mrcfile.new(d / "stack.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 22.0
        mrc.set_extended_header(angles.astype("<i2").view(np.uint8))
        mrc.header.exttyp = b"SERI"
    raw = bytearray((d / "stack.mrc").read_bytes())
    raw[128:132] = np.array([2, 1], "<i2").tobytes()  # nint = 2 bytes per section, nreal = 1
    (d / "stack.mrc").write_bytes(bytes(raw))
    return ["info", str(d / "stack.mrc")], d / "stack.mrc", "SerialEM extended header"


def voxel_size_in_nm_where_angstrom_belong(d):
    path = _raw_mrc(d, "nm.mrc", np.zeros(SHAPE, np.float32), voxel_size_angstrom=0.22)
    return ["info", str(path)], path, "below the 1 Å"


def map_axes_not_a_permutation(d):
    path = _tomogram(d)
    raw = bytearray(path.read_bytes())
    raw[64:76] = np.array([1, 1, 3], "<i4").tobytes()
    path.write_bytes(bytes(raw))
    return ["info", str(path)], path, "map axes"


def empty_tiff(d):
    # an aborted export: a TIFF header whose first image directory is at offset 0 (none)
    (d / "empty.tif").write_bytes(b"II*\0" + b"\0" * 4)
    return ["info", str(d / "empty.tif")], d / "empty.tif", "TIFF"


def missing_file(d):
    return ["info", str(d / "absent.mrc")], d / "absent.mrc", "no such file"


def folder_instead_of_file(d):
    (d / "folder.mrc").mkdir()
    return ["info", str(d / "folder.mrc")], d / "folder.mrc", "folder"


def empty_model(d):
    tomo = _tomogram(d)
    (d / "empty.mod").write_bytes(b"")
    argv = ["mod2labels", str(d / "empty.mod"), "--like", str(tomo), "--out", str(d / "l.mrc")]
    return argv, d / "empty.mod", "not an IMOD model"


def corrupt_model(d):
    tomo = _tomogram(d)
    good = write_vesicle_model(d / "ok.mod", np.array([[5.0, 5.0, 5.0]]), [3.0], VS)
    (d / "bad.mod").write_bytes(good.read_bytes()[:100])
    argv = ["mod2labels", str(d / "bad.mod"), "--like", str(tomo), "--out", str(d / "l.mrc")]
    return argv, d / "bad.mod", "IMOD model"


def model_outside_the_tomogram(d):
    tomo = _tomogram(d)
    model = write_vesicle_model(d / "far.mod", np.array([[5.0, 500.0, 5.0]]), [3.0], VS)
    argv = ["mod2labels", str(model), "--like", str(tomo), "--out", str(d / "l.mrc")]
    return argv, model, "outside"


def labels_of_another_shape(d):
    labels = write_mrc(d / "pred.mrc", np.zeros(SHAPE, np.int16), VS)
    other = write_mrc(d / "truth.mrc", np.zeros((8, 8, 8), np.int16), VS)
    argv = ["evaluate", "--pred", str(labels), "--truth", str(other), "--json"]
    return argv, other, "differs"


def empty_probability_map(d):
    path = _tomogram(d)  # noise: the network finds no vesicle in it
    return ["segment", str(path), "--out", str(d / "out"), "--quiet"], path, "nothing to segment"


def wrong_checkpoint_version(d):
    from analysis.models import SHIPPED_WEIGHTS

    payload = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, d / "old.pt")
    tomo = _tomogram(d)
    argv = ["predict", str(tomo), "--out", str(d / "p.mrc"), "--model", str(d / "old.pt")]
    return argv, d / "old.pt", "format version 99"


def spectrum_matching_without_training_spectra(d):
    from analysis.models import SHIPPED_WEIGHTS

    payload = torch.load(SHIPPED_WEIGHTS, weights_only=True)
    payload["data"] = {}  # a network whose training tomograms are not recorded
    torch.save(payload, d / "unknown.pt")
    tomo = _tomogram(d)
    out = d / "p.mrc"
    argv = ["predict", str(tomo), "--out", str(out), "--model", str(d / "unknown.pt")]
    return [*argv, "--match-spectrum"], None, "no reference spectrum"


def segment_spectrum_matching_without_training_spectra(d):
    argv, _, phrase = spectrum_matching_without_training_spectra(d)
    segment = ["segment", argv[1], "--out", str(d / "out"), "--model", argv[5], "--quiet"]
    return [*segment, "--auto-invert", "--match-spectrum"], None, phrase


def batch_spectrum_matching_without_training_spectra(d):
    argv, _, phrase = spectrum_matching_without_training_spectra(d)
    (d / "in").mkdir()
    Path(argv[1]).rename(d / "in" / "tomo.mrc")
    batch = ["batch", str(d / "in"), "--out", str(d / "out"), "--model", argv[5]]
    return [*batch, "--match-spectrum", "--quiet"], None, phrase


def checkpoint_not_torch(d):
    (d / "m.pt").write_text("not a checkpoint")
    tomo = _tomogram(d)
    argv = ["predict", str(tomo), "--out", str(d / "p.mrc"), "--model", str(d / "m.pt")]
    return argv, d / "m.pt", "not a readable torch checkpoint"


def missing_output_folder(d):
    tomo = _tomogram(d)
    out = d / "no" / "such" / "p.mrc"
    return ["predict", str(tomo), "--out", str(out)], out, "does not exist"


def read_only_output_folder(d):
    tomo = _tomogram(d)
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)
    out = d / "ro" / "p.mrc"
    return ["predict", str(tomo), "--out", str(out)], out, "not writable"


def threshold_not_a_number(d):
    tomo = _tomogram(d)
    argv = ["segment", str(tomo), "--out", str(d / "out"), "--threshold", "high"]
    return argv, None, "--threshold must be a number or 'shell'"


def _active_zone_files(d: Path, table: Path | None = None) -> list[str]:
    """An ``active-zone`` command line on a small tomogram, labels and masks."""
    tomo = _tomogram(d)
    labels = np.zeros(SHAPE, np.int16)
    labels[6:11, 8:13, 8:13] = 1
    az = np.zeros(SHAPE, np.uint8)
    az[:, :, 2] = 1
    write_mrc(d / "labels.mrc", labels, VS)
    write_mrc(d / "az.mrc", az, VS)
    write_mrc(d / "region.mrc", np.ones(SHAPE, np.uint8), VS)
    argv = ["active-zone", str(tomo), "--labels", str(d / "labels.mrc")]
    argv += ["--az-mask", str(d / "az.mrc"), "--region-mask", str(d / "region.mrc")]
    argv += ["--out", str(d / "out")]
    return argv + (["--table", str(table)] if table is not None else [])


def active_zone_table_missing(d):
    table = d / "missing.csv"
    return _active_zone_files(d, table), table, "no such vesicle table"


def active_zone_table_without_vesicle_id(d):
    table = d / "v.csv"
    table.write_text("z_vox,y_vox,x_vox,radius_vox,kept\n8,10,10,2.5,True\n")
    return _active_zone_files(d, table), table, "lacks the columns ['vesicle_id']"


def active_zone_labels_of_another_shape(d):
    argv = _active_zone_files(d)
    write_mrc(d / "labels.mrc", np.zeros((8, 8, 8), np.int16), VS)
    return argv, d / "labels.mrc", "labels of shape (8, 8, 8)"


def check_table_not_a_vesicle_table(d):
    tomo = _tomogram(d)
    (d / "v.csv").write_text("a,b\n1,2\n")
    argv = ["check", str(tomo), "--vesicles", str(d / "v.csv"), "--out", str(d / "c.json")]
    return argv, d / "v.csv", "is not a vesicle table"


def train_resume_from_exported_weights(d):
    import shutil

    from analysis.models import SHIPPED_WEIGHTS

    weights = Path(shutil.copy(SHIPPED_WEIGHTS, d / "shipped.pt"))
    tomo = _tomogram(d)
    labels = write_mrc(d / "l.mrc", np.zeros(SHAPE, np.uint8), VS)
    argv = ["train", str(weights), "--resume", "--tomogram", str(tomo), "--labels", str(labels)]
    return argv, weights, "without its training state"


def train_labels_missing(d):
    tomo = _tomogram(d)
    argv = ["train", str(d / "n.pt"), "--tomogram", str(tomo), "--labels", str(d / "absent.mrc")]
    return argv, d / "absent.mrc", "no such file"


def train_labels_of_another_shape(d):
    tomo = _tomogram(d)
    labels = write_mrc(d / "l.mrc", np.zeros((8, 8, 8), np.uint8), VS)
    argv = ["train", str(d / "n.pt"), "--tomogram", str(tomo), "--labels", str(labels)]
    return argv, labels, "labels of shape (8, 8, 8) differs from the tomogram's"


def train_unpaired_tomograms(d):
    tomo = _tomogram(d)
    argv = ["train", str(d / "n.pt"), "--tomogram", str(tomo)]
    return argv, None, "give --tomogram and --labels the same number of times"


def train_held_without_a_starting_network(d):
    tomo = _tomogram(d)
    labels = write_mrc(d / "l.mrc", np.zeros(SHAPE, np.uint8), VS)
    argv = ["train", str(d / "n.pt"), "--tomogram", str(tomo), "--labels", str(labels)]
    return argv + ["--distill-weight", "1"], None, "need --init-from"


def train_negative_anchor(d):
    argv = ["train", str(d / "n.pt"), "--synthetic", "--init-from", "shipped"]
    return argv + ["--anchor-weight", "-1"], None, "must be 0 or positive"


def adapt_tomogram_missing(d):
    argv = ["adapt", str(d / "absent.mrc"), "--out", str(d / "adapted.pt")]
    return argv, d / "absent.mrc", "no such file"


def batch_missing_input_folder(d):
    argv = ["batch", str(d / "absent"), "--out", str(d / "out")]
    return argv, d / "absent", "input folder does not exist"


def compare_missing_study_table(d):
    argv = ["compare", str(d / "study.csv"), "--out", str(d / "out")]
    return argv, d / "study.csv", "study table does not exist"


def synth_into_a_missing_folder(d):
    out = d / "no" / "such"
    return ["synth", str(out)], out, "does not exist"


def fetch_into_a_file(d):
    out = d / "afile"
    out.write_text("")
    return ["fetch", "portal", "1", "--out", str(out)], out, "is a file"


def average_weights_of_another_voxel_size(d):
    from analysis.models import UNet3D, UNetConfig, save_checkpoint

    net = UNet3D(UNetConfig(depth=2, base_channels=4))
    kw = dict(normalisation={}, seed=0, data={})
    first = save_checkpoint(d / "a.pt", net, voxel_size_nm=2.2, **kw)
    second = save_checkpoint(d / "b.pt", net, voxel_size_nm=1.1, **kw)
    argv = ["average-weights", str(first), str(second), "--out", str(d / "soup.pt")]
    return argv, second, "only networks of one kind can be averaged"


CASES = [
    not_an_mrc,
    truncated_mrc,
    wrong_mode,
    complex_data,
    rgb_data,
    two_d_image,
    nan_voxels,
    inf_voxels,
    constant_tomogram,
    zero_voxel_size,
    anisotropic_voxel_size,
    angstrom_as_nm,
    negative_voxel_size_option,
    huge_header_dimensions,
    tilt_series_given,
    tilt_series_by_extended_header,
    voxel_size_in_nm_where_angstrom_belong,
    map_axes_not_a_permutation,
    empty_tiff,
    missing_file,
    folder_instead_of_file,
    empty_model,
    corrupt_model,
    model_outside_the_tomogram,
    labels_of_another_shape,
    empty_probability_map,
    wrong_checkpoint_version,
    spectrum_matching_without_training_spectra,
    segment_spectrum_matching_without_training_spectra,
    batch_spectrum_matching_without_training_spectra,
    checkpoint_not_torch,
    missing_output_folder,
    read_only_output_folder,
    threshold_not_a_number,
    active_zone_table_missing,
    active_zone_table_without_vesicle_id,
    active_zone_labels_of_another_shape,
    check_table_not_a_vesicle_table,
    train_resume_from_exported_weights,
    train_labels_missing,
    train_labels_of_another_shape,
    train_unpaired_tomograms,
    train_held_without_a_starting_network,
    train_negative_anchor,
    batch_missing_input_folder,
    compare_missing_study_table,
    synth_into_a_missing_folder,
    fetch_into_a_file,
    adapt_tomogram_missing,
    average_weights_of_another_voxel_size,
]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_gives_one_clear_line_and_no_output(case, tmp_path, capsys, monkeypatch):
    argv, culprit, phrase = case(tmp_path)
    if case is read_only_output_folder and os.geteuid() == 0:
        # root may write anywhere: let the folder look read-only, as it is to everyone else
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode: False if Path(p) == tmp_path / "ro" else real_access(p, mode),
        )
    before = _files(tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == EXIT_BAD_INPUT, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    if culprit is not None:
        assert str(culprit) in lines[0]
    assert phrase in lines[0]
    created = _files(tmp_path) - before
    assert not {c for c in created if not Path(tmp_path, c).is_dir()}, created


def test_a_full_disk_leaves_no_partial_output(tmp_path, capsys, monkeypatch):
    import analysis.io.tomogram as tomogram_io

    tomo = _tomogram(tmp_path)
    out = tmp_path / "p.mrc"

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tomogram_io.mrcfile, "new_mmap", no_space)
    before = _files(tmp_path)
    assert main(["predict", str(tomo), "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert str(out) in err and "No space left on device" in err
    assert _files(tmp_path) == before


def test_an_interrupted_run_leaves_the_old_output_untouched(tmp_path, monkeypatch):
    import sys

    predict_module = sys.modules["analysis.inference.predict"]

    tomo = _tomogram(tmp_path)
    out = tmp_path / "p.mrc"
    out.write_bytes(b"the result of an earlier run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "sliding_window", interrupted)
    # Ctrl-C: the conventional exit code of an interrupt, 128 + SIGINT
    assert main(["predict", str(tomo), "--out", str(out), "--quiet"]) == 130
    assert out.read_bytes() == b"the result of an earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mrc", "t.mrc"]


def test_the_suite_is_large_enough():
    assert len(CASES) >= 25


def _commands(group, prefix=()) -> set[tuple[str, ...]]:
    """Every command of a click group, as the words that call it (``("fetch", "portal")``)."""
    import click

    out = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out |= _commands(command, (*prefix, name))
        else:
            out.add((*prefix, name))
    return out


def test_every_command_has_a_bad_input_case(tmp_path):
    import typer.main

    from analysis.cli import app

    commands = _commands(typer.main.get_command(app))
    covered = set()
    for i, case in enumerate(CASES):
        folder = tmp_path / str(i)
        folder.mkdir()
        argv = case(folder)[0]
        covered |= {c for c in commands if tuple(argv[: len(c)]) == c}
    assert commands - covered == set()


def _raise(error):
    def fail(*args, **kwargs):
        raise error

    return fail


@pytest.mark.parametrize("verbose", [False, True])
def test_a_bug_is_an_internal_error_not_bad_input(tmp_path, capsys, monkeypatch, verbose):
    # numpy's LinAlgError (a ValueError) from deep inside: a bug, never "a problem with the file"
    import analysis.io as io

    tomo = _tomogram(tmp_path)
    monkeypatch.setattr(io, "read_tomogram", _raise(np.linalg.LinAlgError("SVD did not converge")))
    capsys.readouterr()
    code = main(["--verbose", "info", str(tomo)] if verbose else ["info", str(tomo)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 1
    assert last.startswith("internal error: LinAlgError: SVD did not converge")
    assert "bug" in last and "--verbose" in last and str(tomo) not in last
    assert ("Traceback" in err) is verbose


def test_the_cross_domain_benchmark_refuses_a_row_no_simulator_has(capsys):
    """A mistyped row name (``combined`` for ``combined_voxel3_tilt50_misaligned``) stops the
    benchmark with one message naming it, instead of leaving the row out of the table."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cross_domain.py"
    spec = importlib.util.spec_from_file_location("cross_domain_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as stop:
        module.main(["--simulator", "testsim", "--rows", "nominal", "combined"])
    assert stop.value.code == 2
    assert "no row combined in testsim" in capsys.readouterr().err
