# `make test` and `make run` bootstrap their own virtual environment from nothing: `make run`
# installs what serving needs, `make test` (and lint, bench, openapi) the rest too.
# Another interpreter: make run PYTHON=python3.12
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: run test lint bench openapi clean venv-stale

# The interpreter, checked before anything is made with it (macOS's own python3 is 3.9).
NEEDED := 3.11
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHON_OK := $(shell v='$(PYTHON_VERSION)'; [ -n "$$v" ] && [ "$${v%%.*}" -eq 3 ] && [ "$${v#*.}" -ge 11 ] && echo yes)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),run)),)
ifneq ($(PYTHON_OK),yes)
$(error Python $(NEEDED) or later is needed; $(PYTHON) is $(or $(addprefix Python ,$(PYTHON_VERSION)),not a Python that runs). Install one and name it: make run PYTHON=python3.12)
endif
endif
# A .venv made by another Python (an older one, or before an upgrade) is made anew.
VENV_VERSION := $(shell [ -x $(BIN)/python ] && $(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifneq ($(wildcard $(VENV)),)
ifneq ($(VENV_VERSION),$(PYTHON_VERSION))
STALE := venv-stale
endif
endif

venv-stale:
	@echo "$(VENV) was made by Python $(or $(VENV_VERSION),that is gone), not $(PYTHON_VERSION): making it anew" >&2
	rm -rf $(VENV)

# --no-compile: each module is compiled when first imported, instead of every module of
# every package now (a third of the install's time; the first start takes a few seconds).
$(RUN_STAMP): pyproject.toml $(STALE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e .
	touch $(RUN_STAMP)

# The connectors kept as their own packages (plugins/) are installed beside the core for
# the tests, so that the conformance suite runs over them too.
PLUGINS := plugins/fhir-upstream

$(STAMP): $(RUN_STAMP) $(addsuffix /pyproject.toml,$(PLUGINS))
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

# The facade on the embedded default: one Leyr and one Nyra sandbox source, in-process.
# Another address: make run PORT=9090 (HOST=0.0.0.0 also needs [server] trusted_hosts).
HOST ?= 127.0.0.1
PORT ?= 8080
run: $(RUN_STAMP)
	$(BIN)/fhir-adapter serve --host $(HOST) --port $(PORT)

# The facade's OpenAPI document; tests/unit/test_openapi.py fails when it drifts.
openapi: $(STAMP)
	$(BIN)/fhir-adapter openapi > openapi/openapi.json

# Style, the layer contracts (pyproject.toml [tool.importlinter]), static types (strict
# for mappings/ and adapter/fhir/), the Dockerfile and compose.yaml (the Compose schema):
# any of them broken fails `make test`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/python deploy/check_compose.py

# The conformance suite runs the FHIR upstream connector against its sandbox server in the
# run above, and again against a facade over that server. The console's browser tests
# drive Debian's chromium (playwright through its executable_path): brought in here on a
# machine that lacks it.
test: lint
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y chromium)
	$(BIN)/pytest -q
	FHIR_UPSTREAM_OVER=facade $(BIN)/pytest -q tests/conformance -k fhir-upstream

bench: $(STAMP)
	$(BIN)/python bench/bench_mappings.py
	$(BIN)/python bench/bench_ratelimit.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
