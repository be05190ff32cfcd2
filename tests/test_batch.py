"""Batch segmentation on a local Dask cluster: resumes, reports failures, keeps going."""

from __future__ import annotations

import shutil
import sys

import pandas as pd
import pytest

from analysis.batch import SUMMARY_NAME, find_tomograms, is_finished
from analysis.cli import main


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory, quick_crop):
    """Three tomograms: two copies of half the quick test tomogram and one corrupt file."""
    folder = tmp_path_factory.mktemp("in")
    source = quick_crop
    shutil.copy(source, folder / "a.mrc")
    shutil.copy(source, folder / "b.mrc")
    (folder / "c.mrc").write_bytes(b"this is not an MRC file" * 100)
    (folder / "a_labels.mrc").write_bytes(b"")  # an output of ours: not an input
    (folder / "notes.txt").write_text("not a tomogram")
    return folder


def test_the_input_folder_lists_tomograms_only(input_dir):
    assert [p.name for p in find_tomograms(input_dir)] == ["a.mrc", "b.mrc", "c.mrc"]


def test_imod_tilt_series_beside_the_reconstruction_are_not_inputs(tmp_path):
    for name in ("TS_01.st", "TS_01.ali", "TS_01.rec"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_tomograms(tmp_path)] == ["TS_01.rec"]


def test_the_listing_takes_what_the_reader_reads_as_a_tomogram(tmp_path):
    import numpy as np

    from analysis.errors import InputFileError
    from analysis.io import read_tomogram, tomogram_stem, write_mrc
    from analysis.io.formats import TILT_SERIES_SUFFIXES, TOMOGRAM_SUFFIXES

    for i, suffix in enumerate(TOMOGRAM_SUFFIXES + TILT_SERIES_SUFFIXES):
        (tmp_path / f"t{i}{suffix}").write_bytes(b"")
    found = find_tomograms(tmp_path)
    assert len(found) == len(TOMOGRAM_SUFFIXES)
    assert sorted(tomogram_stem(p) for p in found) == sorted(
        f"t{i}" for i in range(len(TOMOGRAM_SUFFIXES))
    )
    for suffix in TILT_SERIES_SUFFIXES:  # left out because the reader refuses them
        path = write_mrc(tmp_path / f"TS{suffix}", np.zeros((4, 8, 8), np.float32), 2.2)
        with pytest.raises(InputFileError, match="is a tilt series"):
            read_tomogram(path)


def test_batch_on_two_workers_reports_the_corrupt_file_and_does_no_work_twice(
    input_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["batch", str(input_dir), "--out", str(out), "--workers", "2", "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "2 done, 0 skipped (done before), 1 failed" in captured.out
    assert "c.mrc" in captured.err and "Traceback" not in captured.err
    summary = pd.read_csv(out / SUMMARY_NAME).set_index("tomogram")
    status = {k.split("/")[-1]: v for k, v in summary["status"].items()}
    assert status == {"a.mrc": "done", "b.mrc": "done", "c.mrc": "failed"}
    assert is_finished(input_dir / "a.mrc", out) and is_finished(input_dir / "b.mrc", out)
    assert not list(out.glob("c_*")) and not list(out.glob(".*"))  # nothing half-written
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("[ab]_*")}

    assert main(args) == 1  # the corrupt file still fails …
    assert "0 done, 2 skipped (done before), 1 failed" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("[ab]_*")} == stamps  # … no redo


def test_the_slurm_job_script_carries_the_options():
    from analysis.batch import ClusterSpec, slurm_cluster

    spec = ClusterSpec(
        scheduler="slurm",
        queue="gpu",
        account="lab",
        cores=8,
        memory="32GB",
        walltime="02:00:00",
        gpus=1,
        job_extra=["--constraint=a100"],
    )
    cluster = slurm_cluster(spec)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in [
        "#SBATCH -p gpu",
        "#SBATCH -A lab",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH -t 02:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --constraint=a100",
    ]:
        assert line in script


def test_slurm_without_its_extra_says_what_to_install(monkeypatch):
    from analysis.batch import ClusterSpec, slurm_cluster
    from analysis.errors import ParameterError

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if it were not installed
    with pytest.raises(ParameterError, match=r"pip install 'sv-analysis\[cluster\]'"):
        slurm_cluster(ClusterSpec(scheduler="slurm"))


def test_an_empty_input_folder_is_one_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["batch", str(empty), "--out", str(tmp_path / "o"), "--scheduler", "slurm"]
    assert main([*args, "--job-extra=--constraint=a100"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {empty}: holds no tomogram (.mrc, .rec, .tif, .zarr, …)"
    )
    assert not (tmp_path / "o").exists()


def test_dask_records_stay_off_the_cli_stderr_but_ours_do_not(capsys):
    """Dask logs at INFO on its own loggers, which reach the root's handlers regardless."""
    import logging

    from analysis.batch import silence_dask_logs

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    silence_dask_logs()
    logging.getLogger("distributed.batched").setLevel(logging.INFO)
    logging.getLogger("distributed.batched").error("Traceback of a closed connection")
    logging.getLogger("distributed.http.proxy").info("install jupyter-server-proxy")
    logging.getLogger("analysis.batch").warning("c.mrc: not an MRC file")
    err = capsys.readouterr().err
    assert "c.mrc" in err and "Traceback" not in err and "jupyter" not in err
