# prolo: two commands. `make run` sets up and serves the demo clinic; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PROLO_DATABASE_URL ?= sqlite:///var/prolo.db
export PROLO_PORT ?= 8000

.PHONY: run test install check lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/prolo db upgrade
	$(BIN)/prolo demo
	$(BIN)/prolo serve --port $(PROLO_PORT)

test: $(STAMP)
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/mypy src
	$(BIN)/python -m pytest -q -p no:cacheprovider

check: test

bench: $(STAMP)
	$(BIN)/python bench/schedule.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
