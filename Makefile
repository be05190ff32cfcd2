# Two commands for a fresh clone (see README):  make book   and   make test
# Both create the local virtual environment .venv on first use and reuse it afterwards.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first, pinned, from PyTorch's CPU index: PyPI's Linux wheel of the same
# version is the CUDA build with several GB of dependencies. Where that index cannot be reached,
# the same pin comes from the default index instead, with a warning (on a machine whose
# PIP_FIND_LINKS folder holds the CPU wheel, that is still the CPU build). Another build, e.g.
#   make test TORCH_SPEC=torch==2.5.1 TORCH_INDEX=https://download.pytorch.org/whl/cu121
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed
# CryoVesNet's published weights (GPL-3, never part of this repository) where this machine keeps
# a copy beside the project, as the developers' and CI's shared folder does: the tests on the
# real weights and the book's comparisons with the published network use it; elsewhere they
# skip or download it (see analysis.cryovesnet.fetch_cryovesnet).
ANALYSIS_CRYOVESNET_H5 ?= $(wildcard $(CURDIR)/../shared/cryovesnet/weights.h5)
export ANALYSIS_CRYOVESNET_H5
# pip on some machines prints a warning for every missing mirror folder; hide only those lines
# (the braces keep pip's own exit status for pipefail: a failed install fails the recipe).
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

BOOK_ARGS := . --config book/_config.yml --toc book/_toc.yml --builder html \
             -W -n --keep-going

.PHONY: help install book test lint clean

help:
	@echo "make book   install if needed, run every notebook, build the HTML book in _build/html"
	@echo "make test   install if needed, run all tests (unit, notebooks in quick mode, book build)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null \
	  || $(PY) -m pip install $(TORCH_SPEC) --index-url $(TORCH_INDEX) --timeout 30 --retries 1 \
	       2>&1 | $(QUIET_PIP) \
	  || { echo "warning: $(TORCH_SPEC) not installed from $(TORCH_INDEX); trying the default index"; \
	       $(PY) -m pip install $(TORCH_SPEC) 2>&1 | $(QUIET_PIP); }
	$(PY) -m pip install -e ".[test]" 2>&1 | $(QUIET_PIP)
	$(PY) -c "import analysis, torch; print('installed analysis', analysis.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build $(BOOK_ARGS)
	@echo "Open _build/html/index.html"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

clean:
	rm -rf _build .pytest_cache
