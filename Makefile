# Two commands set everything up on a fresh machine:
#   make run    creates .venv, installs the agent, runs it on the embedded default config
#   make test   installs what the tests need (pip and apt packages, the OpenSearch jars), runs them
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint docs bench system-deps clean

$(VENV)/.run-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[all]'
	touch $@

$(VENV)/.test-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[all,test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(PY) -m agent $(ARGS)

system-deps:
	bash scripts/install-system-deps.sh

lint: $(VENV)/.test-installed
	$(PY) -m ruff check agent parsers outputs common tests bench
	$(PY) -m mypy

test: $(VENV)/.test-installed system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The configuration reference (docs/reference.md and the blocks README.md and docs/*.md embed),
# generated from the config structs' docstrings; tests/test_reference.py fails when it is stale.
docs: $(VENV)/.run-installed
	$(PY) -m agent.reference --write

bench: $(VENV)/.run-installed
	$(PY) -m bench.parse
	$(PY) -m bench.e2e

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
