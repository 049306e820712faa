# Everything runs inside .venv, created from the project's own files (pyproject.toml + constraints.txt).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SYNTHDATA_HOME ?= $(CURDIR)/.synthdata
export SYNTHDATA_HOME
export DAGSTER_HOME := $(SYNTHDATA_HOME)/dagster
# Great Expectations would otherwise try to phone home from every check.
export GX_ANALYTICS_ENABLED := false
STAMP := $(VENV)/.installed

.PHONY: install demo test ui bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m dagster_project.demo

# pytest exits 5 when it collects no tests: that is a failure here, never a pass.
test: install
	$(BIN)/python -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

ui: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -c "from pathlib import Path; from dagster_project.instance import ensure_instance; ensure_instance(Path('$(DAGSTER_HOME)'))"
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(SYNTHDATA_HOME)
