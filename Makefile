# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch 2.13.0 is preinstalled as a wheel on our dev/CI machines; asking for it first
# keeps installs fast there. The package itself only asks for torch>=2.1.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: venv demo examples test test-all lint typecheck bench results-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" || echo "note: $(TORCH_SPEC) unavailable; pip will pick a torch release"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The main job: train RecurrentPPO on CartPole with velocities masked, evaluate, plot.
demo: $(STAMP)
	$(BIN)/tether train --preset cartpole --run-dir runs/demo

examples: $(STAMP)
	$(BIN)/python examples/lifecycle_demo.py
	$(BIN)/python examples/misuse_gallery.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks -q --benchmark-only --benchmark-columns=median,iqr,rounds

# Lists the README / docs tables measured on other tether sources than the checkout's, with the
# commit each was measured on and the command that regenerates it. Exit 1 when any is stale: a
# report of what to re-measure, not a broken build (`make test` checks only that tables render).
results-check: $(STAMP)
	$(BIN)/tether bench check

clean:
	rm -rf $(VENV) build dist src/*.egg-info .benchmarks
