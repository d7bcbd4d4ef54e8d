# reddiff_bench: `make demo` runs the offline comparison, `make test` the fast test suite.
# Both create .venv/ on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch and torchvision must be a pair built for each other: this pair installs together on
# the project's machines (x86-64, Python 3.11; the CUDA build, which also runs on CPU).
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1

export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-all lint gmm-quick gmm train-prior paper tables bench clean-outputs

# make paper [SCALE=offline|paper] [FULL=1] [LAUNCHER=gpus|slurm|...]
SCALE ?= offline

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet $(TORCH_PAIR)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

## The default comparison on the offline exact prior (CPU, a few minutes at most).
demo: install
	$(PY) -m reddiff_bench +experiment=demo

## The Gaussian-mixture posterior benchmark: the CI-sized cell, and the full grid (hours on a CPU).
gmm-quick: install
	$(PY) -m reddiff_bench +experiment=gmm_posterior_quick

gmm: install
	$(PY) -m reddiff_bench +experiment=gmm_posterior

## Train the small offline prior (about 45 minutes on 2 CPU cores; conf/train.yaml).
train-prior: install
	$(PY) -m reddiff_bench train

## The paper's studies (experiments/): run or resume the sweeps, then build tables and figures.
paper: install
	$(PY) -m reddiff_bench paper run --scale $(SCALE) $(if $(FULL),--full) $(if $(LAUNCHER),-- hydra/launcher=$(LAUNCHER))

## Tables, figures and the studies' READMEs from the committed rows alone (seconds).
tables: install
	$(PY) -m reddiff_bench paper tables

## Each solver against the floor of its network calls, and cost against image side and batch.
bench: install
	$(PY) -m reddiff_bench bench

## Fast suite (slow tests excluded; under 5 minutes on 2 cores).
test: install
	$(PY) -m pytest -q -n 2 -m "not slow" tests

## Everything: lint, the fast suite and the slow tests (subprocesses, signals, torchrun, launchers, the wheel).
test-all: install lint
	$(PY) -m pytest -q -n 2 tests

## ruff (pyproject.toml [tool.ruff]) and the layer contract (import-linter, [tool.importlinter]).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean-outputs:
	rm -rf outputs/runs outputs/multirun outputs/demo
