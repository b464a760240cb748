# Two set-up commands: `make demo` and `make test`. Both create .venv and install what they
# need; torch and torchvision are installed first and pinned as a matching pair, so the rest
# of the install cannot pick another version (spandrel, which loads upscaler models, needs
# torchvision, and PyPI's torchvision only imports beside the torch build of its own
# release). PyPI's torch for Linux is the CUDA build (several GB; it runs on the CPU too);
# for a CPU-only pair, add TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (the
# Dockerfile installs a CUDA build on purpose).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX_URL ?=
PIP := $(BIN)/python -m pip
DEMO_DIR ?= ./demo-data

.PHONY: install dev demo test lint run bench clean help

help:
	@echo "make demo   set up, build the offline demo library, check families, draw one image"
	@echo "make test   set up with test tools; ruff, mypy and the whole test suite"
	@echo "make lint   ruff and mypy only"
	@echo "make run    start the Discord bot (needs LORACLE_DISCORD_TOKEN)"
	@echo "make bench  run the CPU benchmarks in benchmarks/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(TORCH) $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)")
	$(PIP) install --quiet -e . $(TORCH)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev,cluster]" $(TORCH)
	@touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

demo: install
	LORACLE_DATA_DIR=$(DEMO_DIR) LORACLE_OFFLINE=1 $(BIN)/loracle demo

lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

run: install
	$(BIN)/loracle run

bench: dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
