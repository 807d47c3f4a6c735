# `make run` starts the exchange, `make test` runs the whole test suite; both create .venv first.
# `make run` installs only what running needs; `make test` adds the test extras (ruff, mypy, pytest, a browser driver...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(BIN)/.runtime

run: $(BIN)/.runtime
	$(BIN)/python run.py $(ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy core actors edge http ws durability history cluster cli.py options.py run.py

test: lint
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m bench.core_bench

clean:
	rm -rf $(VENV) build *.egg-info
