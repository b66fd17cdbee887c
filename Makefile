# efsqlite developer commands. Every target builds what it needs on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: dev test lint format typecheck unit functional e2e faults infra-check bench bench-quick soak schema clean system-tools infra-tools console-shots

$(STAMP): pyproject.toml
	@test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

## dev: run the whole stack locally (local SQS, writer poller, reader) until Ctrl-C
dev: $(STAMP)
	EFSQLITE_DATABASES=todo \
	EFSQLITE_MIGRATIONS_DIR=examples/todo/migrations \
	EFSQLITE_COMMANDS=examples.todo.commands:registry \
	EFSQLITE_QUERIES=examples.todo.queries:queries \
	$(VENV)/bin/efsqlite dev $(DEV_ARGS)

## test: lint, type checks and the whole test suite (what CI runs)
test: lint typecheck system-tools infra-tools
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared/efsqlite

unit functional e2e faults: $(STAMP) system-tools
	$(PY) -m pytest tests/$@ $(PYTEST_ARGS)

## system-tools: strace for the crash tests, Debian's chromium and chromium-driver for the
## browser tests (installed together on Debian-like machines as root when missing)
system-tools:
	@missing=""; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	[ -z "$$missing" ] || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    case "$$missing" in *strace*) \
	      echo "strace not found and cannot be installed here: fault tests will skip";; esac; \
	    case "$$missing" in *chromium*) \
	      echo "chromium/chromedriver not found and cannot be installed here:" \
	        "browser tests will skip";; esac; \
	  fi; }

## infra-tools: cfn-lint, aws-sam-cli and checkov in their own venvs under .tools/ (for tests/infra)
infra-tools:
	scripts/install-infra-tools

## console-shots: the browser tests, saving each console page's screenshot for docs/console.md
console-shots: $(STAMP) system-tools
	EFSQLITE_CONSOLE_SHOTS=docs/console $(PY) -m pytest tests/console $(PYTEST_ARGS)

schema: $(STAMP)
	$(VENV)/bin/efsqlite schema

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## bench: the full benchmark suite (bench/results/report.md, *.json, *.png); needs strace
bench: $(STAMP) system-tools
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/run.py

## bench-quick: the same comparisons with fewer repetitions (about two minutes)
bench-quick: $(STAMP) system-tools
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/run.py --quick

## soak: the fault suite with a wider matrix (longer runs, more kill points)
soak: $(STAMP) system-tools
	$(PY) -m pip install -q -e '.[dev,bench]'
	EFSQLITE_SOAK=1 $(PY) -m pytest tests/faults -m faults -s $(PYTEST_ARGS)
