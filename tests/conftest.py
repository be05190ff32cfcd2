"""Shared fixtures: small files made by the tests themselves (no third-party data)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from analysis.io import write_mrc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture
def small_volume(rng):
    """A float32 volume (z, y, x) = (6, 7, 8) of random values."""
    return rng.normal(size=(6, 7, 8)).astype(np.float32)


@pytest.fixture
def mrc_path(tmp_path, small_volume):
    """An MRC file of ``small_volume`` at 2.2 nm voxels."""
    return write_mrc(tmp_path / "tomo.mrc", small_volume, 2.2)


def _build_book(source, toc, out):
    """``jupyter-book build`` of ``source`` with ``toc`` into ``out``, in quick mode, strictly
    (-W -n: a failing notebook or a broken reference fails the build)."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "jupyter-book"),
            "build",
            str(source),
            "--config",
            str(ROOT / "book" / "_config.yml"),
            "--toc",
            str(toc),
            "--path-output",
            str(out),
            "--builder",
            "html",
            "-W",
            "-n",
            "--keep-going",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANALYSIS_QUICK="1"),
        cwd=source,
    )


@pytest.fixture
def build_book():
    """The quick, strict book build as a function of (source, toc, out)."""
    return _build_book


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory):
    """The whole book built once in quick mode: (the finished process, its ``_build`` folder).

    The build executes every notebook; the notebook tests read the executed copies it keeps in
    ``_build/jupyter_execute`` instead of executing each notebook a second time (myst-nb
    executes in the notebook's folder, as a user would, and keeps every output there).
    """
    out = tmp_path_factory.mktemp("book")
    proc = _build_book(ROOT, ROOT / "book" / "_toc.yml", out)
    return proc, out / "_build"


class SegmentedExample(NamedTuple):
    """One ``analysis segment`` run: the example files, the command without its ``--out``,
    the output folder, and what the run printed."""

    files: dict
    args: list
    out: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def segmented_example(tmp_path_factory):
    """``analysis segment`` of the quick example tomogram (generator, seed 301) with its
    active-zone and region masks, default settings, not quiet, run once for every test that
    reads such a run (:class:`SegmentedExample`).

    The folder is shared: a test that writes into it copies it first.
    """
    import contextlib
    import io

    from analysis.cli import main
    from analysis.synthetic import example_files

    files = example_files("test", seed=301, quick=True)
    args = ["segment", str(files["tomogram"])]
    args += ["--az-mask", str(files["az_mask"]), "--region-mask", str(files["region_mask"])]
    out = tmp_path_factory.mktemp("segmented_example")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([*args, "--out", str(out)])
    assert code == 0, stderr.getvalue()
    return SegmentedExample(files, args, out, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def quick_crop(tmp_path_factory):
    """Half the quick example tomogram (generator, seed 301): its first 64 rows in y, an MRC
    of (z, y, x) = (64, 64, 128) voxels of 2.2 nm holding 19 of its 36 vesicle centres, for
    tests whose point is the bookkeeping around a segmentation, not the segmentation."""
    from analysis.io import read_tomogram
    from analysis.synthetic import example_files

    tomo = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    path = tmp_path_factory.mktemp("quick_crop") / "crop.mrc"
    return write_mrc(path, np.ascontiguousarray(tomo.data[:, :64]), tomo.voxel_size_nm)
