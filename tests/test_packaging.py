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


def _extras() -> dict[str, list[str]]:
    return _pyproject()["project"]["optional-dependencies"]


def _conda_names(requirement: str) -> list[str]:
    name = _name(requirement)
    return CONDA_NAMES.get(name, [name.split("[")[0]])


# environment.yml: the package's dependencies and the extras a user of the conda environment
# needs to build the book and to run on a cluster
ENVIRONMENT_EXTRAS = ("book", "cluster")


def test_environment_yml_lists_every_dependency_with_the_same_bounds():
    env = _environment(ROOT / "environment.yml")
    wanted = list(_pyproject()["project"]["dependencies"])
    wanted += [r for extra in ENVIRONMENT_EXTRAS for r in _extras()[extra]]
    for requirement in wanted:
        spec = _spec(requirement)
        for conda_name in _conda_names(requirement):
            assert conda_name in env, (
                f"{conda_name} (for {requirement}) missing from environment.yml"
            )
            assert env[conda_name] == spec.split("]")[-1], (
                f"{conda_name}: {env[conda_name]} vs {spec}"
            )
    names = {"python", "pip"} | {c for r in wanted for c in _conda_names(r)}
    assert set(env) == names, f"extra packages in environment.yml: {set(env) - names}"


def _binder_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            name, version = line.split("==")
            pins[name.split("[")[0].lower()] = version
    return pins


def test_binder_pins_every_dependency_within_its_bounds():
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = _binder_pins()
    for requirement in _pyproject()["project"]["dependencies"]:
        req = Requirement(requirement)
        assert req.name in pins, f"{req.name} not pinned in binder/requirements.txt"
        assert req.specifier.contains(Version(pins[req.name]), prereleases=True), (
            f"{req.name}=={pins[req.name]} outside {req.specifier}"
        )
    # the CPU build of torch, from PyTorch's CPU index (Binder has no GPU)
    assert Version(pins["torch"]).local == "cpu"
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    # nothing the notebooks do not need: no book build, no SLURM
    assert not {"jupyter-book", "sphinx-exercise", "jupyterlab", "dask-jobqueue"} & set(pins)
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()
    # Binder reads environment.yml before requirements.txt: there must be none in binder/
    assert not (ROOT / "binder" / "environment.yml").exists()


def test_the_core_package_leaves_the_book_and_the_cluster_to_extras():
    names = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    for package in [
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
    # Colab and pip users get what the notebooks need, not a book builder or a SLURM client
    for package in [
        "jupyter-book",
        "jupyterlab",
        "dask-jobqueue",
        "sphinxcontrib-bibtex",
        "sphinx-exercise",
    ]:
        assert package not in names, package
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in _extras().items()}
    assert {"jupyter-book", "sphinxcontrib-bibtex", "sphinx-exercise", "jupyterlab"} <= extras[
        "book"
    ]
    assert "dask-jobqueue" in extras["cluster"]
    # make test installs the test extra: it must bring the book and the cluster extras along
    assert "sv-analysis[book,cluster]" in _extras()["test"]


def test_torch_is_never_installed_unpinned_by_the_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==\d+\.\d+\.\d+$", makefile, re.M)
    # torch is installed (pinned) before the package, so pip never resolves torch on its own
    assert makefile.index("$(TORCH_SPEC)") < makefile.index('pip install -e ".[test]"')
    # from PyTorch's CPU index first (PyPI's Linux wheel is the CUDA build), the plain pin after
    assert re.search(r"^TORCH_INDEX \?= https://download\.pytorch\.org/whl/cpu$", makefile, re.M)
    first = makefile.index("pip install $(TORCH_SPEC) --index-url $(TORCH_INDEX)")
    assert first < makefile.index("|| {", first) < makefile.index("pip install $(TORCH_SPEC) 2>&1")
    # pip's exit status survives the filter of its output (pipefail), so a failure fails make
    assert re.search(r"^QUIET_PIP := \{ grep .* \|\| true; \}$", makefile, re.M)


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
