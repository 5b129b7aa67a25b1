# Every target creates the virtualenv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench bench-smoke clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,beam]'  # beam: the Beam ingest runs in CI too
	touch $(STAMP)

demo: $(STAMP)  ## ingest -> train -> export -> generate on the embedded corpus
	$(BIN)/nextword demo

test: $(STAMP)  ## the whole test suite, slow round trips included
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## every benchmark; rewrites bench/RESULTS.md
	$(BIN)/python bench/run

bench-smoke: $(STAMP)
	$(BIN)/python bench/run --smoke

clean:
	rm -rf $(VENV) .pytest_cache
