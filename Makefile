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

# mypy checks the package as `openbell` (what the repository root is imported as), through a symlink in .venv:
# checked by directory, imports of `openbell.*` would not resolve and would pass unchecked as Any.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	mkdir -p $(VENV)/mypy-root && ln -sfn ../.. $(VENV)/mypy-root/openbell
	cd $(VENV)/mypy-root && MYPYPATH=. ../bin/mypy -p openbell --config-file ../../pyproject.toml

test: lint
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m bench.core_bench

clean:
	rm -rf $(VENV) build *.egg-info
