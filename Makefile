# `make test` and `make run` bootstrap their own virtual environment from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench openapi clean

# The connectors kept as their own packages (plugins/) are installed beside the core, so
# that the conformance suite runs over them too.
PLUGINS := plugins/fhir-upstream

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

# The facade on the embedded default: one Leyr and one Nyra sandbox source, in-process.
# Another address: make run PORT=9090 (HOST=0.0.0.0 also needs [server] trusted_hosts).
HOST ?= 127.0.0.1
PORT ?= 8080
run: $(STAMP)
	$(BIN)/fhir-adapter serve --host $(HOST) --port $(PORT)

# The facade's OpenAPI document; tests/unit/test_openapi.py fails when it drifts.
openapi: $(STAMP)
	$(BIN)/fhir-adapter openapi > openapi/openapi.json

# Style, the layer contracts (pyproject.toml [tool.importlinter]), static types (strict
# for mappings/ and adapter/fhir/) and the Dockerfile: any of them broken fails `make test`.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

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
