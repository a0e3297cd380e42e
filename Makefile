# The two commands README promises: `make run` and `make test`. Both bootstrap .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-upstream lint typecheck unit functional integration bench conformance docs clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test,clients]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/allotment serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck chromium
	$(BIN)/pytest $(PYTEST_ARGS)

# The simulator's report is rendered in Debian's headless Chromium by
# tests/integration/test_sim_report_chromium.py. Under CI=true a missing chromium is
# installed from Debian (as root, or through sudo); elsewhere the test skips and says why.
chromium:
	@if [ "$$CI" = "true" ] && ! command -v chromium >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; \
	fi

# Against the real OpenStack Placement 16 (installed from PyPI into /tmp/anchor-placement on
# first use): the differential candidate test and the scheduler-over-upstream scenarios.
test-upstream: $(STAMP)
	ALLOTMENT_REAL_PLACEMENT=install $(BIN)/pytest -m real_placement $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

functional: $(STAMP)
	$(BIN)/pytest tests/functional $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

# Needs the shared tools next to the repository (../shared); without them it says so.
conformance: $(STAMP)
	@if [ -x ../shared/tools/conformance.sh ]; then ../shared/tools/conformance.sh $(ARGS); \
	else echo "conformance skipped: ../shared/tools/conformance.sh is not there"; fi

# The reference pages generated from the code (tests/unit/test_docs.py checks them).
docs: $(STAMP)
	$(BIN)/python -m allotment.docs config > docs/configuration.md
	$(BIN)/python -m allotment.docs scheduler-api > docs/scheduler-api.md

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
