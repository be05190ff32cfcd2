"""pyproject.toml, environment.yml and binder/ describe the same installation."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name(s), where they differ.
CONDA_NAMES = {"torch": ["pytorch"], "dask[distributed]": ["dask", "distributed"]}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower()


def _spec(requirement: str) -> str:
    return requirement.strip()[len(_name(requirement)) :].replace(" ", "")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    out = {}
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            out[_name(item)] = _spec(item)
    return out


def test_environment_yml_lists_every_dependency_with_the_same_bounds():
    env = _environment(ROOT / "environment.yml")
    for requirement in _pyproject()["project"]["dependencies"]:
        name, spec = _name(requirement), _spec(requirement)
        for conda_name in CONDA_NAMES.get(name, [name.split("[")[0]]):
            assert conda_name in env, f"{conda_name} (for {name}) missing from environment.yml"
            assert env[conda_name] == spec.split("]")[-1], (
                f"{conda_name}: {env[conda_name]} vs {spec}"
            )
    wanted = {"python", "pip"} | {
        c
        for r in _pyproject()["project"]["dependencies"]
        for c in CONDA_NAMES.get(_name(r), [_name(r).split("[")[0]])
    }
    assert set(env) == wanted, f"extra packages in environment.yml: {set(env) - wanted}"


def test_binder_uses_the_same_environment():
    assert _environment(ROOT / "binder" / "environment.yml") == _environment(
        ROOT / "environment.yml"
    )
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()


def test_named_packages_are_dependencies():
    names = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    for package in [
        "jupyter-book",
        "jupyterlab",
        "torch",
        "mrcfile",
        "numpy",
        "pandas",
        "matplotlib",
        "seaborn",
        "ipywidgets",
        "imodmodel",
        "connected-components-3d",
        "edt",
        "scipy",
        "scikit-image",
        "typer",
        "tqdm",
        "dask[distributed]",
    ]:
        assert package in names, package


def test_torch_is_never_installed_unpinned_by_the_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==\d+\.\d+\.\d+$", makefile, re.M)
    # torch is installed (pinned) before the package, so pip never resolves torch on its own
    assert makefile.index("$(TORCH_SPEC)") < makefile.index('pip install -e ".[test]"')


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    lines = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[-1].strip() == "make test"


def test_repository_url_is_the_same_everywhere():
    url = _pyproject()["project"]["urls"]["Homepage"]
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert config["repository"]["url"] == url
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["repository-code"] == url
