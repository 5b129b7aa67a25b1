# Every target creates the virtualenv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The demo needs the package alone; the tests also need pytest and the Beam extra (the Beam ingest runs in CI).
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,beam]'
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run  ## ingest -> train -> export -> generate on the embedded corpus
	$(BIN)/nextword demo

# Two test processes on CI's 2 cores: most tests wait on subprocesses that import TensorFlow, so the
# suite is not CPU-bound end to end. A file runs whole in one process (its module fixtures are shared).
TEST_WORKERS ?= 2

test: $(VENV)/.installed-test  ## the whole test suite, slow round trips included (TEST_WORKERS=1: one process)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.installed-test  ## every benchmark; rewrites bench/RESULTS.md
	$(BIN)/python bench/run

bench-smoke: $(VENV)/.installed-test
	$(BIN)/python bench/run --smoke --out $(VENV)/bench-smoke

clean:
	rm -rf $(VENV) .pytest_cache
