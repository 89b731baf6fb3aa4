# Threadline — every target bootstraps what it needs (a .venv, Debian chromium, node modules).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SERVER_STAMP := $(VENV)/.server-stamp
export THREADLINE_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: serve test lint typecheck bench demo system-deps js-deps clean openapi

# The server alone (make serve, make demo).
$(SERVER_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server]'
	touch $(SERVER_STAMP)

# Everything the tests need: the server, test tools and the framework integrations.
$(STAMP): $(SERVER_STAMP)
	$(BIN)/python -m pip install -q -e '.[server,test,integrations]'
	touch $(STAMP)

## serve: run Threadline on 127.0.0.1:6006 (UI, API, OTLP/HTTP), 4318 (OTLP/HTTP), 4317 (OTLP/gRPC)
serve: $(SERVER_STAMP)
	@echo "Threadline:   http://$${THREADLINE_HOST:-127.0.0.1}:$${THREADLINE_PORT:-6006}/ (send OTLP to .../v1/traces)"
	@if [ -n "$${THREADLINE_DATABASE_URL:-}" ]; then echo "Data:         the database of THREADLINE_DATABASE_URL"; \
	  else echo "Data:         $${THREADLINE_HOME:-$$HOME/.threadline}/threadline.db (SQLite)"; fi
	@echo "Demo data:    $${THREADLINE_PORT:+THREADLINE_PORT=$$THREADLINE_PORT }make demo   (in another terminal, while this one runs)"
	@echo "The command:  $(CURDIR)/$(BIN)/threadline --help   (or: source $(VENV)/bin/activate)"
	@echo "Stop with Ctrl+C."
	$(BIN)/threadline serve

## demo: fill the `demo` project of a running server with generated conversations
demo: $(SERVER_STAMP)
	$(BIN)/threadline demo

## system-deps: Debian packages the tests need (chromium for the browser tests, iproute2's ss, nodejs)
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium (browser tests)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v ss >/dev/null 2>&1 || { \
	  echo "installing Debian iproute2 (ss: socket queues in the overload tests)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
	@command -v node >/dev/null 2>&1 || { \
	  echo "installing Debian nodejs and npm (JavaScript SDK test)"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }

## js-deps: npm packages of the JavaScript interoperability test (versions pinned in tests/js)
js-deps: system-deps
	@if [ -f tests/js/package.json ]; then \
	  cd tests/js && { [ -d node_modules ] && [ node_modules/.stamp -nt package.json ] || \
	    { npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error; } && touch node_modules/.stamp; }; fi

## lint: ruff, mypy and the import rules
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: every test, on SQLite and PostgreSQL, plus lint
test: $(STAMP) system-deps js-deps lint
	$(BIN)/pytest -q

## openapi: regenerate docs/openapi.json, the committed OpenAPI document (tests/api/test_openapi_snapshot.py)
openapi: $(SERVER_STAMP)
	$(BIN)/python -m threadline.server.web.openapi_snapshot docs/openapi.json

## bench: ingest, overload and query benchmarks (prints figures and ratios)
bench: $(STAMP)
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.overload
	$(BIN)/python -m bench.query

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
