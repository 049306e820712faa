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

.PHONY: install demo test ui materialize bench clean

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

# The UI and the daemon (schedules, sensors, automation, backfills) over $(SYNTHDATA_HOME)'s instance.
ui: install
	$(BIN)/python -m dagster_project.cli dev -h 127.0.0.1 -p 3000

# One asset (and partition) from the command line, on the same instance: the run shows in `make ui`.
# make materialize SELECT=raw_images PARTITION=2024-01-01
SELECT ?= raw_images
materialize: install
	$(BIN)/python -m dagster_project.cli materialize --select $(SELECT) $(if $(PARTITION),--partition $(PARTITION))

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(SYNTHDATA_HOME)
