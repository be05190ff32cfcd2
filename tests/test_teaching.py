"""The book teaches: every chapter states its learning objectives and has exercises whose
solutions are executed code, and every glossary link names a term of the glossary."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GLOSSARY = ROOT / "book" / "glossary.md"
TEACHING = ROOT / "book" / "teaching.md"
TERM_ROLE = re.compile(r"\{term\}`([^`]+)`")
EXERCISE = re.compile(r"^```\{exercise\}[^\n]*\n:label: (\S+)", re.MULTILINE)
SOLUTION_START = re.compile(r"^```\{solution-start\} (\S+)", re.MULTILINE)


def glossary_terms(text: str) -> set[str]:
    """The terms of the first ```{glossary} block, lower-cased as Sphinx matches them."""
    block = text.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    return {ln.strip().lower() for ln in block.splitlines() if ln.strip() and ln[0] not in " \t"}


def term_targets(text: str) -> list[str]:
    """The glossary entries that {term} roles in a text point at: `label <target>` or `target`."""
    targets = []
    for content in TERM_ROLE.findall(text):
        named = re.search(r"<([^<>]+)>\s*$", content)
        targets.append((named.group(1) if named else content).strip().lower())
    return targets


def _objective_problems(markdown: list[str]) -> list[str]:
    objectives = [s for s in markdown if "## Learning objectives" in s]
    if not objectives:
        return ["no '## Learning objectives'"]
    after = objectives[0].split("## Learning objectives", 1)[1].split("\n## ", 1)[0]
    if sum(ln.startswith("- ") for ln in after.splitlines()) < 2:
        return ["fewer than two learning objectives"]
    return []


def _section_problems(markdown: list[str], exercises: list[str]) -> list[str]:
    problems = []
    headings = [ln for s in markdown for ln in s.splitlines() if ln.startswith("## ")]
    if "## Exercises" not in headings:
        problems.append("no '## Exercises' section")
    elif "## Summary" in headings and headings.index("## Exercises") > headings.index("## Summary"):
        problems.append("the exercises come after the Summary")
    if len(exercises) < 2:
        problems.append(f"{len(exercises)} exercise(s), fewer than two")
    return problems


def _solutions(cells) -> tuple[dict[str, int], list[str]]:
    """The number of code cells of each gated solution, and what is wrong with the gates."""
    solved, problems = {}, []
    open_label, n_code = None, 0
    for cell in cells:
        if cell.cell_type == "code":
            n_code += open_label is not None
            if open_label and ("def " in cell.source or "class " in cell.source):
                problems.append(f"solution {open_label} defines logic in the notebook")
            continue
        started = SOLUTION_START.findall(cell.source)
        if started:
            if open_label:
                problems.append(f"solution {open_label} is not ended before {started[0]}")
            open_label, n_code = started[0], 0
        if "```{solution-end}" in cell.source:
            if open_label is None:
                problems.append("solution-end without solution-start")
            else:
                solved[open_label] = n_code
            open_label = None
    if open_label:
        problems.append(f"solution {open_label} is never ended")
    return solved, problems


def teaching_problems(nb) -> list[str]:
    """What a chapter lacks: learning objectives, exercises, or an executed solution to each."""
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    exercises = [label for s in markdown for label in EXERCISE.findall(s)]
    solved, gate_problems = _solutions(nb.cells)
    problems = _objective_problems(markdown) + _section_problems(markdown, exercises)
    problems += gate_problems
    problems += [
        f"exercise {label} has no solution with a code cell"
        for label in exercises
        if solved.get(label, 0) < 1
    ]
    problems += [f"solution {label} answers no exercise" for label in set(solved) - set(exercises)]
    return problems


def _notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(s[5:])
        if s.startswith("code:")
        else nbformat.v4.new_markdown_cell(s)
        for s in cells
    ]
    return nb


GOOD = (
    "## Overview\n\n## Learning objectives\n\n- run a\n- explain b\n\n## Prerequisites",
    "## Exercises",
    "```{exercise} One\n:label: ex-1\n\nPredict.\n```",
    "```{solution-start} ex-1\n:class: dropdown\n```",
    "code:print(1)",
    "Because.\n\n```{solution-end}\n```",
    "```{exercise}\n:label: ex-2\n\nPredict.\n```",
    "```{solution-start} ex-2\n```",
    "code:print(2)",
    "```{solution-end}\n```",
    "## Summary",
)


def test_the_checks_find_what_a_chapter_lacks():
    assert teaching_problems(_notebook(*GOOD)) == []
    no_objectives = [c.replace("## Learning objectives", "## Goals") for c in GOOD]
    assert teaching_problems(_notebook(*no_objectives)) == ["no '## Learning objectives'"]
    unsolved = [c for c in GOOD if c != "code:print(2)"]
    assert teaching_problems(_notebook(*unsolved)) == [
        "exercise ex-2 has no solution with a code cell"
    ]
    one_exercise = GOOD[:6] + GOOD[10:]
    assert teaching_problems(_notebook(*one_exercise)) == ["1 exercise(s), fewer than two"]
    unended = [c for c in GOOD if c != "Because.\n\n```{solution-end}\n```"]
    assert "solution ex-1 is not ended before ex-2" in teaching_problems(_notebook(*unended))
    late = GOOD[:1] + GOOD[-1:] + GOOD[1:-1]
    assert teaching_problems(_notebook(*late)) == ["the exercises come after the Summary"]


def test_term_targets_and_glossary_terms_are_read_as_sphinx_reads_them():
    assert term_targets("a {term}`Missing wedge` and {term}`tethers <tether>`") == [
        "missing wedge",
        "tether",
    ]
    text = "# G\n\n```{glossary}\nactive zone\nAZ\n  The membrane.\n\nCTF\n  Contrast.\n```\n"
    assert glossary_terms(text) == {"active zone", "az", "ctf"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_has_objectives_and_exercises_with_executed_solutions(path):
    problems = teaching_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_exercise_labels_are_unique_across_the_book():
    labels = [
        label
        for path in NOTEBOOKS
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "markdown"
        for label in EXERCISE.findall(cell.source)
    ]
    assert len(labels) == len(set(labels)), "an exercise label is used twice"


def test_every_glossary_link_names_a_glossary_term():
    terms = glossary_terms(GLOSSARY.read_text())
    assert len(terms) >= 30
    sources = {p.name: p.read_text() for p in (ROOT / "book").glob("*.md")}
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        sources[path.name] = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    links = {name: term_targets(text) for name, text in sources.items()}
    assert sum(map(len, links.values())) >= 30, "the chapters hardly link the glossary"
    missing = {name: sorted(set(t) - terms) for name, t in links.items() if set(t) - terms}
    assert not missing, f"{{term}} links to terms the glossary lacks: {missing}"


def test_the_teaching_page_plans_every_exercise():
    text = TEACHING.read_text()
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        for cell in cells:
            for label in EXERCISE.findall(cell.source) if cell.cell_type == "markdown" else []:
                assert f"{{ref}}`{label}`" in text, f"{label} ({path.name}) not in the course plan"
