# `make run` starts the exchange, `make test` runs the whole test suite; both create .venv first.
# `make run` installs only what running needs; `make test` adds the test extras (ruff, mypy, pytest, a browser driver...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run demo test lint bench clean

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

# `make demo`: the exchange (in memory, in --dev mode: sign in on the page with any user id) and the market
# simulator together; open http://127.0.0.1:8000/ and the book moves. Ctrl-C stops the simulator (it cancels its
# orders and checks its users' balances), then the exchange (started in a session of its own where setsid exists,
# so that Ctrl-C reaches the simulator first).
DEMO_PORT ?= 8000
demo: $(BIN)/.runtime
	@$$(command -v setsid) $(BIN)/python run.py --dev --in-memory --port $(DEMO_PORT) --log-level warning & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server' EXIT; \
	echo "exchange starting on http://127.0.0.1:$(DEMO_PORT)/ (the web page); Ctrl-C stops the demo"; \
	$(BIN)/python run.py simulate --url http://127.0.0.1:$(DEMO_PORT) --wait 30 --duration 0 --rate 40 \
		--makers 3 --takers 4 $(ARGS)

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
