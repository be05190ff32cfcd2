"""The book builds offline, strictly: a failing notebook or a broken reference fails the build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.book
def test_whole_book_builds_in_quick_mode(quick_book, tmp_path):
    proc, build = quick_book
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = build / "html"
    index = (html / "book" / "intro.html").read_text()
    assert "Synaptic vesicles at the active zone" in index
    assert (html / "index.html").exists()
    page = (html / "notebooks" / "01_data.html").read_text()
    assert "voxel size: 2.200 nm" in page  # the notebook was executed, its output rendered
    # the build's own execution times: the report page and the script that records them
    assert "07_your_own_tomograms" in (html / "book" / "build_report.html").read_text()
    out = tmp_path / "times.csv"
    script = ROOT / "benchmarks" / "book_times.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(build), "--out", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANALYSIS_QUICK="1"),
    )
    assert proc.returncode == 0, proc.stderr
    times = pd.read_csv(out)
    assert sorted(times.notebook) == sorted(p.stem for p in (ROOT / "notebooks").glob("0*.ipynb"))
    assert (times.seconds > 0).all() and set(times["mode"]) == {"quick"}


@pytest.mark.book
def test_a_failing_notebook_fails_the_build(build_book, tmp_path):
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
    proc = build_book(src, toc, tmp_path / "out")
    assert proc.returncode != 0
    assert "deliberately broken" in proc.stdout + proc.stderr


_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_NUMBERS.update({"seven": 7, "eight": 8, "nine": 9, "ten": 10, "half a": 0.5})
_UNITS = {"second": 1, "minute": 60, "hour": 3600}
_STATEMENT = re.compile(
    r"Time to run:\*\*\s*(?:under|about)\s+(half a|an?|one|two|three|four|five|six|seven|eight|"
    r"nine|ten|\d+)\s+(second|minute|hour)s?"
)


def stated_seconds(notebook: Path) -> float:
    """The duration a notebook's Prerequisites give as its "Time to run", in seconds."""
    text = "".join(
        "".join(cell.source)
        for cell in nbformat.read(notebook, 4).cells
        if cell.cell_type == "markdown"
    )
    found = _STATEMENT.search(text)
    assert found, f"{notebook.name}: no 'Time to run:** about/under N minutes' statement"
    number, unit = found.groups()
    return float(_NUMBERS.get(number, number)) * _UNITS[unit]


def test_time_to_run_statements_are_within_twice_the_measured_times():
    """Each notebook's stated time is within 2× of its time in the last full fresh build
    (book/notebook_times.csv, written by benchmarks/book_times.py)."""
    measured = pd.read_csv(ROOT / "book" / "notebook_times.csv").set_index("notebook")
    notebooks = sorted((ROOT / "notebooks").glob("0*.ipynb"))
    assert sorted(measured.index) == [p.stem for p in notebooks]
    assert set(measured["mode"]) == {"full"}
    for notebook in notebooks:
        ratio = stated_seconds(notebook) / measured.loc[notebook.stem, "seconds"]
        assert 0.5 <= ratio <= 2.0, f"{notebook.name}: stated / measured time = {ratio:.2f}"
