# Everything a fresh machine needs: `make demo` and `make test` create the environment first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PREFECT_HOME ?= $(CURDIR)/var/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: install demo test lint typecheck unit bench bench-intake up clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	$(BIN)/fieldsync demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy fieldsync connectors blocks tasks flows tests benchmarks

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m benchmarks.shift_start

bench-intake: $(STAMP)
	$(BIN)/python -m benchmarks.intake

# The local stack: Prefect server (UI on :4200), a process worker, the intake (:8400).
up: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	$(BIN)/fieldsync up

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
