# certyard — see README.md.  `make run` serves ACME; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run venv softhsm test lint bench clean

# The server's own dependencies only (no test extras): .venv (installing python3-venv with apt
# when this Python cannot make one), then the project in editable mode. Redone when
# pyproject.toml changes.
STAMP := $(VENV)/.certyard-run-deps

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/pip ] && ! $(PYTHON) -m venv $(VENV); then \
		echo "make: cannot create $(VENV); installing python3 and python3-venv with apt" >&2; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends python3 python3-venv \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv; }; \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install -q -e .
	@touch $@

venv: $(STAMP)

# The embedded default keeps the CA keys on a SoftHSM2 token: install the Debian package first
# when it is missing (as root; see docs/hsm.md for another PKCS#11 module or software keys).
softhsm:
	@if ! command -v softhsm2-util >/dev/null; then \
		echo "make: installing softhsm2 with apt (the CA keys live on a SoftHSM2 token)" >&2; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends softhsm2 \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends softhsm2; }; \
	fi

run: $(STAMP) softhsm
	$(BIN)/certyard serve

# Installs the test dependencies, starts the private PostgreSQL cluster, runs pytest over the
# whole suite and stops PostgreSQL whatever happened, exiting with pytest's status.
test:
	PYTHON=$(PYTHON) VENV=$(VENV) scripts/install-test-deps.sh
	@scripts/postgres-test.sh start
	@trap 'scripts/postgres-test.sh stop' EXIT; trap 'exit 130' INT TERM; \
	CERTYARD_TEST_POSTGRES_URL="$$(scripts/postgres-test.sh url)" \
		$(BIN)/pytest -q $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy

bench:
	@shopt -s nullglob; scripts=(benchmarks/*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmarks yet"; fi; \
	for script in "$${scripts[@]}"; do \
		echo "== $$script"; $(BIN)/python "$$script" || exit $$?; \
	done

# Removes caches and the test PostgreSQL cluster; keeps .venv and var/ca (the CA of `make run`).
clean:
	-@test ! -d var/pgtest || scripts/postgres-test.sh stop
	rm -rf var/pgtest .pytest_cache .mypy_cache .ruff_cache build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
