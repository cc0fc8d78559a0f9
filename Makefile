# `make train` and `make test` set up .venv on first use (pip, editable, with dev extras; EXTRAS=dev,ray adds Ray,
# as CI does).
PYTHON ?= python3
EXTRAS ?= dev
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: train lint format test test-all bench bench-diagnostics screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $(STAMP)

train: $(STAMP)  ## train with the default config; extra overrides: make train ARGS="activation=elu"
	$(BIN)/nnlab train $(ARGS)

lint: $(STAMP)   ## ruff: the code as its formatter writes it (one line length, 120), and its checks (pyproject.toml)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)  ## ruff format and ruff check --fix: what `make lint` asks for
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint   ## the lint, then the quick suite (no test marked slow): under 10 minutes on 2 cores
	$(BIN)/python -m pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

test-all: lint   ## the lint, then the full suite: the quick one and the long experiment, kill and equivalence tests (CI runs this)
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

bench: $(STAMP)  ## nnlab against the tutorial and bare loops, start-up, sweeps: make bench ARGS="--only mlp"
	$(BIN)/python scripts/bench.py $(ARGS)

bench-diagnostics: $(STAMP)  ## what the default diagnostics cost
	$(BIN)/python scripts/bench_diagnostics.py $(ARGS)

screenshots: $(STAMP)  ## TensorBoard pictures from a fresh sweep in headless Chromium (outputs/screenshots; ARGS="--out docs" updates the docs')
	$(BIN)/python scripts/screenshots.py $(ARGS)

clean:
	rm -rf outputs .pytest_cache
