# The two set-up commands of the README: `make run` and `make test`. Both install everything first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, on its own, so the right build lands: `torch==2.13.0` is the CPU build on a
# machine with a local CPU wheel and the CUDA build from PyPI elsewhere. CPU-only elsewhere:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PROFILE ?= tiny
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install install-dev run test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e . -c constraints.txt
	$(BIN)/medsafe setup  # Prefect's local database, once, so the first `medsafe data` does not create it

install-dev: install
	$(BIN)/pip install -q -e ".[dev,demo]" -c constraints.txt
	@command -v chromium >/dev/null || (command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will skip")
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  (command -v apt-get >/dev/null && (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
	  echo "postgresql not installed: the PostgreSQL judge-cache tests will skip")

run: install  ## install, then run the whole pipeline on the embedded default profile
	$(BIN)/medsafe run --profile $(PROFILE)

test: install-dev  ## install, then run the test suite
	$(BIN)/python -m pytest -q

lint: install-dev  ## the pinned ruff: lint (line length enforced) and formatting
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench:
	$(BIN)/python benchmarks/bench_data_flow.py
	$(BIN)/python benchmarks/bench_teacher.py
