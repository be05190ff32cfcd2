"""The book builds offline, strictly: a failing notebook or a broken reference fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"


def _build(source: Path, toc: Path, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANALYSIS_QUICK="1")
    return subprocess.run(
        [
            str(JUPYTER_BOOK),
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
        env=env,
        cwd=source,
    )


@pytest.mark.book
def test_whole_book_builds_in_quick_mode(tmp_path):
    proc = _build(ROOT, ROOT / "book" / "_toc.yml", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    index = (html / "book" / "intro.html").read_text()
    assert "Synaptic vesicles at the active zone" in index
    assert (html / "index.html").exists()
    page = (html / "notebooks" / "01_data.html").read_text()
    assert "voxel size: 2.200 nm" in page  # the notebook was executed, its output rendered


@pytest.mark.book
def test_a_failing_notebook_fails_the_build(tmp_path):
    src = tmp_path / "src"
    (src / "book").mkdir(parents=True)
    shutil.copy(ROOT / "book" / "intro.md", src / "book" / "intro.md")
    shutil.copy(ROOT / "book" / "pipeline.svg", src / "book" / "pipeline.svg")
    (src / "book" / "how_to_run.md").write_text("# How\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("raise RuntimeError('deliberately broken')"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    (src / "notebooks").mkdir()
    nbformat.write(nb, src / "notebooks" / "01_data.ipynb")
    toc = src / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/how_to_run\n"
        "  - file: notebooks/01_data\n"
    )
    proc = _build(src, toc, tmp_path / "out")
    assert proc.returncode != 0
    assert "deliberately broken" in proc.stdout + proc.stderr
