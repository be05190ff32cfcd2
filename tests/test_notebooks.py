"""Notebook conventions, and every notebook executed in quick mode."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPO_URL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Homepage"]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [ch["file"] for ch in part.get("chapters", [])]
    return files


def test_there_are_notebooks_and_they_are_numbered_in_order():
    assert NOTEBOOKS, "no notebooks found"
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    # one number per chapter, from 1 up; a chapter still being written (07) may be missing
    assert numbers[0] == 1 and numbers == sorted(set(numbers))
    assert len(numbers) >= max(numbers) - 1


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    toc = _toc_files()
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in toc, f"{nb.name} is not in book/_toc.yml"
    for entry in toc:
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"toc entry {entry} has no file"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    for cell in cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "stored with outputs"
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert (
        sum(
            ln.startswith("# ")
            for c in cells
            if c.cell_type == "markdown"
            for ln in c.source.splitlines()
        )
        == 1
    ), "exactly one '#' title"
    badge = f"colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/main/notebooks/{path.name}"
    assert badge in first.source, "Colab badge missing or pointing elsewhere"
    install = cells[1]
    assert install.cell_type == "code"
    assert 'if "google.colab" in sys.modules:' in install.source
    # pinned to a tag or commit, pip's output shown (a failure is not silent), widgets drawn
    assert f'git+{REPO_URL}@{{COMPANION_REF}}"' in install.source
    assert 'COMPANION_REF = "' in install.source
    assert "    %pip install " in install.source and "subprocess" not in install.source
    assert " -q" not in install.source and "--quiet" not in install.source
    assert "output.enable_custom_widget_manager()" in install.source
    # the book shows results, not the Colab set-up
    assert "remove-cell" in install.metadata.get("tags", [])
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "ANALYSIS_QUICK" in params[0].source
    headings = [
        ln
        for c in cells
        if c.cell_type == "markdown"
        for ln in c.source.splitlines()
        if ln.startswith("## ")
    ]
    for section in (
        "## Overview",
        "## Prerequisites",
        "## Imports",
        "## Summary",
        "## What's next",
    ):
        assert section in headings, f"missing section {section}"
    # no logic defined in notebooks: functions and classes belong in the package
    for cell in cells:
        if cell.cell_type == "code":
            assert "def " not in cell.source and "class " not in cell.source


def _execute_quick(path: Path):
    """The notebook executed in quick mode, with its outputs."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("ANALYSIS_QUICK")
    os.environ["ANALYSIS_QUICK"] = "1"
    try:
        NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        if env_before is None:
            os.environ.pop("ANALYSIS_QUICK", None)
        else:
            os.environ["ANALYSIS_QUICK"] = env_before
    return nb


def _executed_in_book(name: str, quick_book):
    """The copy of notebook ``name`` with its outputs that the quick book build executed."""
    proc, build = quick_book
    executed = build / "jupyter_execute" / "notebooks" / name
    if not executed.exists():
        # the build stops at the first failing notebook: show where it failed
        log = proc.stdout + proc.stderr
        at = log.find("ExecutionError")  # nbclient's CellExecutionError too
        excerpt = log[max(at - 1500, 0) : at + 1500] if at >= 0 else log[-3000:]
        pytest.fail(
            f"the quick book build (exit code {proc.returncode}) did not execute {name}, "
            f"or failed in it:\n{excerpt}"
        )
    return nbformat.read(executed, as_version=4)


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_quick_mode(path, quick_book):
    # the quick book build (tests/conftest.py) has executed every notebook once; its copy with
    # the outputs is read here rather than executing the notebook a second time
    nb = _executed_in_book(path.name, quick_book)
    assert len(nb.cells) == len(nbformat.read(path, as_version=4).cells)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # every cell ran (the Colab set-up cell too: it does nothing outside Colab), but for the
    # interactive viewers the book does not execute (tag skip-execution)
    run = [c for c in code if "skip-execution" not in c.metadata.get("tags", [])]
    assert all(c.execution_count is not None for c in run)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    # the rendered book shows file names or paths relative to the repository, never where the
    # build machine keeps them
    machine = [str(ROOT), str(Path.home()), tempfile.gettempdir()]
    shown = [
        text
        for c in code
        for o in c.outputs
        for kind, text in [("text", o.get("text", "")), *o.get("data", {}).items()]
        # images are base64, where a short name such as /tmp turns up by chance
        if not kind.startswith("image/") and isinstance(text, str)
        if any(m in text for m in machine)
    ]
    assert not shown, f"machine paths in the outputs: {shown[0][:300]}"


def _printed_numbers(nb) -> list[str]:
    """Every text output and table, with elapsed times masked (they differ between runs)."""
    import re

    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            texts.append(re.sub(r"\d+(\.\d+)? s\b", "<time> s", text))
    return texts


@pytest.mark.notebook
def test_the_same_notebook_run_twice_prints_the_same_numbers(quick_book):
    """Chapter 4 executed afresh prints what it printed in the book build, another process."""
    name = "04_postprocessing.ipynb"
    first = _printed_numbers(_executed_in_book(name, quick_book))
    second = _printed_numbers(_execute_quick(ROOT / "notebooks" / name))
    assert first == second
    assert sum(any(ch.isdigit() for ch in t) for t in first) >= 5  # there are numbers to compare
